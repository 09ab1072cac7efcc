package sweep

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/cost"
)

// sweepMetrics are the sweep's instruments (docs/observability.md).
type sweepMetrics struct {
	duration metric.Float64Histogram
	actions  metric.Int64Counter
	live     metric.Int64Gauge
	health   metric.Int64Gauge
	kept     metric.Int64Gauge
	freed    metric.Int64Counter
}

func newSweepMetrics(mp metric.MeterProvider) sweepMetrics {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter("github.com/snapsweep/snapsweep/sweep")
	var sm sweepMetrics
	sm.duration, _ = m.Float64Histogram("snapsweep.sweep.duration", metric.WithUnit("s"),
		metric.WithDescription("Duration of a sweep run."))
	sm.actions, _ = m.Int64Counter("snapsweep.sweep.actions", metric.WithUnit("{snapshot}"),
		metric.WithDescription("What sweeps did, by action: expired, threshold, redriven, confirmed_deleted, orphan_found, orphan_adopted, orphan_in_grace, orphan_unknown_session, stuck_failed, stuck_closed, reconciled, vanished, deferred."))
	sm.live, _ = m.Int64Gauge("snapsweep.snapshots.live", metric.WithUnit("{snapshot}"),
		metric.WithDescription("Live snapshots in the registry (counted by the sweep)."))
	sm.health, _ = m.Int64Gauge("snapsweep.health.status", metric.WithUnit("1"),
		metric.WithDescription("Health check status per check: 0 ok, 1 degraded, 2 failing."))
	sm.kept, _ = m.Int64Gauge(KeptMetric, metric.WithUnit("By"),
		metric.WithDescription("Storage of the registered, labelled snapshots still kept, by reason (retained, running, deleting, held, refused, failed): Compute's storageBytes as the sweep's listing reports it."))
	sm.freed, _ = m.Int64Counter(cleanup.FreedMetric, metric.WithUnit("By"),
		metric.WithDescription("Storage held by the snapshots snapsweep deleted (an upper bound of what is freed); here, deletions the sweep confirmed."))
	return sm
}

// KeptMetric is the gauge of kept storage by reason.
const KeptMetric = "snapsweep.storage.kept"

func level(s Status) int64 {
	switch s {
	case Failing:
		return 2
	case Degraded:
		return 1
	}
	return 0
}

func (sm sweepMetrics) record(ctx context.Context, rep *Report) {
	sm.duration.Record(ctx, float64(rep.DurationMs)/1000, metric.WithAttributes(attribute.Bool("dry_run", rep.DryRun)))
	for action, n := range map[string]int{
		"expired": rep.Expired.Scheduled, "threshold": rep.Threshold.Scheduled, "redriven": rep.Stuck.Redriven,
		"confirmed_deleted": rep.Stuck.ConfirmedDeleted, "orphan_found": rep.Orphans.Found,
		"orphan_adopted": rep.Orphans.Adopted, "deferred": rep.Deferred,
		"orphan_unknown_session": rep.Orphans.UnknownSession, "orphan_in_grace": rep.Orphans.InGrace,
		"stuck_failed": rep.Stuck.Failed, "stuck_closed": rep.Stuck.Closed,
		"vanished": rep.Reconcile.Vanished + rep.Orphans.Vanished, "reconciled": rep.Reconcile.Checked,
	} {
		if n > 0 {
			sm.actions.Add(ctx, int64(n), metric.WithAttributes(attribute.String("action", action)))
		}
	}
	sm.live.Record(ctx, rep.Threshold.Live)
	if rep.Storage.Complete {
		// A partial listing would report a drop that did not happen.
		for _, why := range cost.Reasons() {
			sm.kept.Record(ctx, rep.Storage.Kept[why].Bytes, metric.WithAttributes(attribute.String("reason", string(why))))
		}
	}
	if rep.Storage.Freed > 0 {
		sm.freed.Add(ctx, rep.Storage.Freed)
	}
	for _, c := range rep.Checks {
		name := c.Name
		if len(name) > 8 && name[:8] == "compute:" {
			name = "compute" // one series per check kind; the project is in the report
		}
		sm.health.Record(ctx, level(c.Status), metric.WithAttributes(attribute.String("check", name)))
	}
}
