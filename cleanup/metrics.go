package cleanup

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/store"
)

// engineMetrics are the engine's instruments (docs/observability.md).
type engineMetrics struct {
	results      metric.Int64Counter
	computeErrs  metric.Int64Counter
	latency      metric.Float64Histogram
	freed        metric.Int64Counter
	breakerState metric.Int64ObservableGauge
}

func newEngineMetrics(mp metric.MeterProvider, e *Engine) engineMetrics {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter("github.com/snapsweep/snapsweep/cleanup")
	var em engineMetrics
	em.results, _ = m.Int64Counter("snapsweep.cleanup.results", metric.WithUnit("{snapshot}"),
		metric.WithDescription("Cleanup outcomes by result: deleted, already_gone, refused, failed, skipped, dry_run, pending."))
	em.computeErrs, _ = m.Int64Counter("snapsweep.compute.errors", metric.WithUnit("{error}"),
		metric.WithDescription("Compute API errors by operation and class."))
	em.latency, _ = m.Float64Histogram("snapsweep.deletion.latency", metric.WithUnit("s"),
		metric.WithDescription("Time from registration (from=registration) or from the cleanup request (from=request) to the confirmed deletion."),
		metric.WithExplicitBucketBoundaries(0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400, 259200, 604800))
	em.freed, _ = m.Int64Counter(FreedMetric, metric.WithUnit("By"),
		metric.WithDescription("Storage held by the snapshots snapsweep deleted, by snapshot type: Compute's storageBytes read right before each delete. An upper bound of what is freed (a later snapshot of the chain takes over the data it still needs)."))
	em.breakerState, _ = m.Int64ObservableGauge("snapsweep.compute.breaker.state", metric.WithUnit("1"),
		metric.WithDescription("Compute circuit breaker: 0 closed, 1 half-open, 2 open."),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(BreakerLevel(e.BreakerState()))
			return nil
		}))
	return em
}

// BreakerLevel maps a breaker state to the gauge value.
func BreakerLevel(state string) int64 {
	switch state {
	case "open":
		return 2
	case "half-open":
		return 1
	}
	return 0
}

func (em engineMetrics) result(ctx context.Context, rec *store.Snapshot, res Result, now time.Time) {
	em.results.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(res))))
	if res != ResultDeleted || rec == nil {
		return
	}
	em.Freed(ctx, rec)
	if !rec.RegisteredAt.IsZero() {
		em.latency.Record(ctx, now.Sub(rec.RegisteredAt).Seconds(), metric.WithAttributes(attribute.String("from", "registration")))
	}
	if !rec.CleanupRequestedAt.IsZero() {
		em.latency.Record(ctx, now.Sub(rec.CleanupRequestedAt).Seconds(), metric.WithAttributes(attribute.String("from", "request")))
	}
}

func (em engineMetrics) computeError(ctx context.Context, op string, class gce.Class) {
	em.computeErrs.Add(ctx, 1, metric.WithAttributes(attribute.String("op", op), attribute.String("class", string(class))))
}

// FreedMetric is the counter of the storage deleted snapshots held.
const FreedMetric = "snapsweep.storage.freed"

// Freed counts the storage a snapshot snapsweep deleted held (nothing when
// its size was never read).
func (em engineMetrics) Freed(ctx context.Context, rec *store.Snapshot) {
	if rec == nil || rec.Size == nil || em.freed == nil {
		return
	}
	em.freed.Add(ctx, rec.Size.StorageBytes, metric.WithAttributes(attribute.String("type", rec.Size.Type)))
}
