// Package sweep is the Cloud Scheduler-triggered pass that finds whatever
// the event path missed: expired and over-threshold snapshots, stuck work,
// orphans in Compute, and the health of everything snapsweep depends on.
// Its Firestore reads grow with the work it finds, not with the registry:
// every query is bounded by an index range and the per-sweep cap.
//
// It deletes nothing itself: it schedules through cleanup.Scheduler, and
// every record change goes through package lifecycle.
package sweep

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/telemetry"
)

// Store is what the sweep needs from the registry.
type Store interface {
	cleanup.SnapshotStore
	GetSnapshot(ctx context.Context, key store.Key) (*store.Snapshot, error)
	CountSnapshots(ctx context.Context, q store.Query) (int64, error)
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	SaveHealth(ctx context.Context, h store.HealthRecord) error
	LatestHealth(ctx context.Context, n int) ([]store.HealthRecord, error)
	GetSession(ctx context.Context, id string) (*store.Session, error)
	Ping(ctx context.Context) error
	ListSessionsByOutcome(ctx context.Context, outcome store.Outcome, limit int) ([]store.Session, error)
	ListSessionsJudgedSince(ctx context.Context, since time.Time, limit int) ([]store.Session, error)
}

// SessionJudge judges a session's cleanup outcome at once
// (cleanup.Judge.JudgeNow).
type SessionJudge interface {
	JudgeNow(ctx context.Context, sessionID string) (store.Outcome, error)
}

// Compute is what the sweep needs from the Compute API.
type Compute interface {
	Get(ctx context.Context, project, name string) (gce.Snapshot, error)
	ListByLabel(ctx context.Context, project, labelKey string, fn func(gce.Snapshot) error) error
	Ping(ctx context.Context, project string) error
}

// Config configures a Sweeper.
type Config struct {
	Store     Store
	Compute   Compute
	Scheduler *cleanup.Scheduler
	Publisher cleanup.Publisher
	// Policy holds the rules (allowlist, orphan grace and TTL, re-drive
	// bound): the sweep decides nothing itself.
	Policy lifecycle.Policy
	// Judge re-judges completed sessions whose outcome is still pending or
	// was written within RejudgeWindow: a judgement lost to a crash or a
	// race, or skipped by the engine's debounce (cleanup.Judge), is made up
	// here. Optional.
	Judge SessionJudge
	// RejudgeWindow is how far back a written verdict is judged again
	// (default 2h). It must exceed the time between two sweeps plus the
	// judge's interval, so that every skipped judgement falls in some
	// sweep's window.
	RejudgeWindow time.Duration

	Projects     []string
	SessionLabel string
	// MaxLive is SNAPSWEEP_MAX_LIVE_SNAPSHOTS; MaxDeletes the per-sweep cap.
	MaxLive, MaxDeletes int
	// StuckAfter is how long cleanup_pending or deleting may last before the
	// sweep re-drives it (default 10m).
	StuckAfter time.Duration
	// AdoptOrphans registers labelled snapshots of known sessions missing
	// from the registry (after Policy.OrphanGrace, expiring Policy.OrphanTTL
	// after adoption); false only reports them.
	AdoptOrphans bool
	// ReconcileBatch is how many live records one run checks against
	// Compute for snapshots that vanished (default 200); successive runs
	// walk the whole registry.
	ReconcileBatch int
	// Budget bounds a run (default 4m, below Scheduler's attempt deadline).
	Budget time.Duration
	// DryRun makes every run a dry run.
	DryRun bool
	// CheckPublish proves the cleanup topic accepts publishes (optional).
	CheckPublish func(ctx context.Context) error
	// Breaker reports the Compute breaker state (optional).
	Breaker func() string
	// HistoryTTL is how long stored reports are kept (default 7 days).
	HistoryTTL time.Duration
	Now        func() time.Time
	// Meter provides the sweep's metrics (default: the global provider).
	Meter metric.MeterProvider
	// Prices prices the storage the sweep finds kept (default
	// cost.DefaultPrices).
	Prices *cost.Prices
}

// Sweeper runs sweeps.
type Sweeper struct {
	cfg     Config
	metrics sweepMetrics
}

// New returns a sweeper with defaults filled in.
func New(cfg Config) *Sweeper {
	if cfg.StuckAfter <= 0 {
		cfg.StuckAfter = 10 * time.Minute
	}
	cfg.Policy = cfg.Policy.WithDefaults()
	if cfg.ReconcileBatch <= 0 {
		cfg.ReconcileBatch = 200
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 4 * time.Minute
	}
	if cfg.HistoryTTL <= 0 {
		cfg.HistoryTTL = 7 * 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Sweeper{cfg: cfg, metrics: newSweepMetrics(cfg.Meter)}
}

// Status of a health check or of a whole report.
type Status string

// Check statuses, from good to bad.
const (
	OK       Status = "ok"
	Degraded Status = "degraded"
	Failing  Status = "failing"
)

func worse(a, b Status) Status {
	rank := map[Status]int{OK: 0, Degraded: 1, Failing: 2}
	if rank[b] > rank[a] {
		return b
	}
	return a
}

// Check is one health check's result.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
}

// Report is everything a run found and did.
type Report struct {
	RunID      string    `json:"runId"`
	StartedAt  time.Time `json:"startedAt"`
	DurationMs int64     `json:"durationMs"`
	DryRun     bool      `json:"dryRun"`
	// Skipped says why the run did nothing (another run holds the lease,
	// or this scheduled run already ran).
	Skipped string  `json:"skipped,omitempty"`
	Status  Status  `json:"status"`
	Checks  []Check `json:"checks"`

	Expired   Found     `json:"expired"`
	Threshold Threshold `json:"threshold"`
	Stuck     Stuck     `json:"stuck"`
	Orphans   Orphans   `json:"orphans"`
	Reconcile Reconcile `json:"reconcile"`
	// Storage is what the registered, labelled snapshots the listing found
	// hold, by why they are kept, as Compute reports it now.
	Storage Storage `json:"storage"`
	// Sessions counts completed sessions re-judged, by resulting outcome.
	Sessions map[store.Outcome]int `json:"sessions,omitempty"`
	// Cap is the per-sweep limit of cleanup messages; Deferred counts the
	// work left for later runs because of it.
	Cap      int `json:"cap"`
	Used     int `json:"used"`
	Deferred int `json:"deferred"`
	// Reads counts the Firestore documents the run read (queries that
	// return nothing count one, aggregations one per 1,000 entries).
	Reads  int      `json:"reads"`
	Errors []string `json:"errors,omitempty"`
	// StepsMs is how long each step took.
	StepsMs map[string]int64 `json:"stepsMs"`

	// listed is the orphan step's listing (project → name → Compute id),
	// for the reconcile step of the same run.
	listed map[string]map[string]string
	// reserved is the part of the cap kept for re-drives until they run;
	// stuckPending and stuckDeleting are the stuck records found first.
	reserved                    int
	stuckPending, stuckDeleting []store.Snapshot
}

// Found counts one kind of work.
type Found struct {
	Found     int            `json:"found"`
	Scheduled int            `json:"scheduled"`
	Skipped   map[string]int `json:"skipped,omitempty"`
}

// Threshold reports the live-snapshot threshold.
type Threshold struct {
	Live      int64 `json:"live"`
	Max       int   `json:"max"`
	Over      bool  `json:"over"`
	Scheduled int   `json:"scheduled"`
	Protected int   `json:"protected"`
}

// Stuck reports re-driven work. Re-drives get at most a fifth of the cap,
// so that expiry and threshold cleanup always get their turn.
type Stuck struct {
	Pending          int `json:"pending"`
	Deleting         int `json:"deleting"`
	Redriven         int `json:"redriven"`
	ConfirmedDeleted int `json:"confirmedDeleted"`
	// Failed counts records failed for an operator: re-driven too often
	// without progress, or outside the allowlist.
	Failed int `json:"failed"`
	// Closed counts deleting records whose snapshot turned out to be
	// another one (the name was reused).
	Closed int `json:"closed"`
}

// Orphans reports labelled snapshots the registry does not know.
type Orphans struct {
	Found   int      `json:"found"`
	Adopted int      `json:"adopted"`
	Names   []string `json:"names,omitempty"` // the first few, for the report
	// InGrace counts orphans of known sessions younger than the grace
	// period (or of unknown age): left for a later run, when their report
	// may have arrived.
	InGrace int `json:"inGrace"`
	// UnknownSession counts labelled snapshots of sessions this registry
	// never knew: reported, never adopted or deleted.
	UnknownSession      int      `json:"unknownSession"`
	UnknownSessionNames []string `json:"unknownSessionNames,omitempty"`
	Vanished            int      `json:"vanished"` // registry records whose snapshot is gone
}

// Storage is the kept storage the sweep's listing found, by reason.
type Storage struct {
	Kept  map[cost.Reason]cost.Amount `json:"kept"`
	Total cost.Amount                 `json:"total"`
	// Measured counts records whose recorded size changed and was written
	// (a size still UPDATING last time, or a chain's data moved into it).
	Measured int `json:"measured"`
	// Freed is the storage (up to) of the deletions this run confirmed.
	Freed int64 `json:"freedBytes,omitempty"`
	// Complete is set when every allowlisted project was listed (the
	// figures are then the whole kept storage of labelled snapshots).
	Complete bool   `json:"complete"`
	Line     string `json:"line,omitempty"`
}

// Reconcile reports the check of live records against Compute.
type Reconcile struct {
	Checked  int `json:"checked"`
	Vanished int `json:"vanished"`
	// Next is where the next run continues (a cursor; empty: from the start).
	Next string `json:"next,omitempty"`
}

func newID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Run runs one sweep. runID (X-CloudScheduler-ScheduleTime) makes a
// redelivered scheduled run a no-op; the sweep lease keeps overlapping runs
// from both acting.
func (s *Sweeper) Run(ctx context.Context, dryRun bool, runID string) (*Report, error) {
	start := s.cfg.Now()
	rep := &Report{RunID: runID, StartedAt: start.UTC(), DryRun: dryRun || s.cfg.DryRun, Cap: s.cfg.MaxDeletes, Status: OK}
	if rep.RunID == "" {
		rep.RunID = "manual-" + start.UTC().Format("20060102T150405Z") + "-" + newID()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.Budget)
	defer cancel()
	holder := rep.RunID + "/" + newID()
	got, err := s.cfg.Store.AcquireLease(ctx, "sweep", holder, start, s.cfg.Budget+30*time.Second)
	if err != nil {
		return rep, fmt.Errorf("sweep lease: %w", err)
	}
	if !got {
		rep.Skipped = "another sweep holds the lease"
		return rep, nil
	}
	defer s.cfg.Store.ReleaseLease(context.WithoutCancel(ctx), "sweep", holder)
	if runID != "" && !rep.DryRun {
		// One lease per scheduled run, never released: a redelivery of a
		// run that already ran finds it held and does nothing.
		once, err := s.cfg.Store.AcquireLease(ctx, "sweep-run-"+sanitize(runID), holder, start, 24*time.Hour)
		if err != nil {
			return rep, fmt.Errorf("sweep run marker: %w", err)
		}
		if !once {
			rep.Skipped = "scheduled run " + runID + " already ran"
			return rep, nil
		}
	}

	rep.StepsMs = map[string]int64{}
	// Re-drives of stuck work run after expiry and threshold cleanup, with
	// a share of the cap kept for them when there is stuck work: neither
	// can starve the other.
	if err := s.findStuck(ctx, rep); err != nil {
		rep.Errors = append(rep.Errors, "stuck: "+err.Error())
		rep.Status = worse(rep.Status, Degraded)
	}
	rep.reserved = min(rep.redriveShare(), len(rep.stuckPending)+len(rep.stuckDeleting))
	wall := time.Now() // durations are wall time, whatever clock the policy uses
	s.health(ctx, rep)
	rep.StepsMs["health"] = time.Since(wall).Milliseconds()
	steps := []struct {
		name string
		run  func(context.Context, *Report) error
	}{
		{"expired", s.expired},
		{"threshold", s.threshold},
		{"stuck", s.stuck},
		{"orphans", s.orphans},
		{"reconcile", s.reconcile},
		{"sessions", s.sessions},
	}
	for _, st := range steps {
		t := time.Now()
		err := st.run(ctx, rep)
		rep.StepsMs[st.name] = time.Since(t).Milliseconds()
		if err != nil {
			rep.Errors = append(rep.Errors, st.name+": "+err.Error())
			rep.Status = worse(rep.Status, Degraded)
		}
	}
	rep.DurationMs = time.Since(wall).Milliseconds()
	s.record(ctx, rep)
	s.metrics.record(ctx, rep)
	return rep, nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '/' || r < 0x20 {
			return '_'
		}
		return r
	}, s)
}

func (s *Sweeper) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// remaining is how many cleanup messages the cap still allows (less the
// part kept for the re-drives that have not run yet).
func (r *Report) remaining() int { return max(r.Cap-r.Used-r.reserved, 0) }

// schedule claims and publishes snaps, splitting orphans (which have no
// task) off under their own reason, and counts against the cap.
func (s *Sweeper) schedule(ctx context.Context, rep *Report, snaps []store.Snapshot, reason events.CleanupReason) (cleanup.Scheduled, error) {
	var orphans, owned []store.Snapshot
	for _, sn := range snaps {
		if sn.TaskID == "" {
			orphans = append(orphans, sn)
		} else {
			owned = append(owned, sn)
		}
	}
	total := cleanup.Scheduled{Skipped: map[string]int{}}
	var errs []error
	for _, batch := range []struct {
		snaps  []store.Snapshot
		reason events.CleanupReason
	}{{owned, reason}, {orphans, events.ReasonOrphan}} {
		if len(batch.snaps) == 0 {
			continue
		}
		res, err := s.cfg.Scheduler.Schedule(ctx, batch.snaps, batch.reason)
		total.Published += res.Published
		for k, v := range res.Skipped {
			total.Skipped[k] += v
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	rep.Used += total.Published
	return total, errors.Join(errs...)
}

// page reads up to limit snapshots of q, following cursors.
func (s *Sweeper) page(ctx context.Context, rep *Report, q store.Query, limit int) ([]store.Snapshot, bool, error) {
	var out []store.Snapshot
	for len(out) < limit {
		q.Limit = min(limit-len(out), 500)
		p, err := s.cfg.Store.ListSnapshots(ctx, q)
		if err != nil {
			return out, false, err
		}
		rep.Reads += p.Reads
		out = append(out, p.Snapshots...)
		if p.Next == "" {
			return out, false, nil
		}
		q.After = p.Next
	}
	return out, true, nil
}

// expired schedules active and retained snapshots past their expiry.
func (s *Sweeper) expired(ctx context.Context, rep *Report) error {
	now := s.now()
	q := store.Query{States: []store.State{store.Active, store.Retained}, ExpiresBefore: now}
	limit := rep.remaining()
	if rep.DryRun {
		limit = rep.Cap
	}
	snaps, more, err := s.page(ctx, rep, q, limit+1)
	if err != nil {
		return err
	}
	if len(snaps) > limit {
		snaps, more = snaps[:limit], true
	}
	rep.Expired.Found = len(snaps)
	if more {
		n, err := s.cfg.Store.CountSnapshots(ctx, q)
		if err == nil {
			rep.Reads++
			rep.Deferred += int(n) - len(snaps)
			rep.Expired.Found = int(n)
		}
	}
	if rep.DryRun {
		return nil
	}
	res, err := s.schedule(ctx, rep, snaps, events.ReasonExpired)
	rep.Expired.Scheduled, rep.Expired.Skipped = res.Published, res.Skipped
	return err
}

// threshold runs the emergency cleanup above MaxLive: oldest first, only
// what the retention rules allow (rule 3 is never broken, so protected
// snapshots are counted, not deleted), and a failing check says so.
func (s *Sweeper) threshold(ctx context.Context, rep *Report) error {
	live, err := s.cfg.Store.CountSnapshots(ctx, store.Query{States: store.LiveStates()})
	if err != nil {
		return err
	}
	rep.Reads += 1 + int(live/1000)
	rep.Threshold = Threshold{Live: live, Max: s.cfg.MaxLive, Over: live > int64(s.cfg.MaxLive)}
	if !rep.Threshold.Over {
		rep.Checks = append(rep.Checks, Check{Name: "live-snapshots", Status: OK, Reason: fmt.Sprintf("%d live of at most %d", live, s.cfg.MaxLive)})
		return nil
	}
	rep.Checks = append(rep.Checks, Check{Name: "live-snapshots", Status: Failing,
		Reason: fmt.Sprintf("%d live snapshots exceed SNAPSWEEP_MAX_LIVE_SNAPSHOTS=%d: emergency cleanup of the oldest eligible", live, s.cfg.MaxLive)})
	rep.Status = Failing
	need := min(int(live)-s.cfg.MaxLive, rep.remaining())
	if rep.DryRun || need <= 0 {
		if need <= 0 && !rep.DryRun {
			rep.Deferred += int(live) - s.cfg.MaxLive
		}
		return nil
	}
	// Retained first (oldest failure leftovers), then active; the policy
	// skips what is still protected. Reads stay bounded by 2× the need.
	for _, st := range []store.State{store.Retained, store.Active} {
		if need <= 0 {
			break
		}
		snaps, _, err := s.page(ctx, rep, store.Query{States: []store.State{st}, OrderByCreated: true}, 2*need)
		if err != nil {
			return err
		}
		res, err := s.schedule(ctx, rep, snaps, events.ReasonThreshold)
		rep.Threshold.Scheduled += res.Published
		for _, n := range res.Skipped {
			rep.Threshold.Protected += n
		}
		need -= res.Published
		if err != nil {
			return err
		}
	}
	return nil
}

// redriveShare is the part of the cap kept for re-drives of stuck work:
// they get at least this much and whatever expiry and threshold cleanup
// left, and those get the rest, so records that can never finish cannot
// starve them (nor the other way round).
func (r *Report) redriveShare() int { return max(r.Cap/5, 1) }

// stuck re-drives cleanup_pending and deleting records older than the
// lease, oldest first: a request whose message was lost is published again;
// a delete whose confirmation was lost is confirmed by reading the
// snapshot. A record re-driven too often without progress is failed.
func (s *Sweeper) stuck(ctx context.Context, rep *Report) error {
	now := s.now()
	rep.reserved = 0
	share := rep.remaining()
	pending, deleting := rep.stuckPending, rep.stuckDeleting
	if len(pending) > share {
		rep.Deferred += len(pending) - share
		pending = pending[:share]
	}
	if rep.DryRun {
		return nil
	}
	var errs []error
	if len(pending) > 0 {
		res, err := s.cfg.Scheduler.Redrive(ctx, pending, events.ReasonExpired)
		rep.Stuck.Redriven += res.Published
		rep.Used += res.Published
		rep.Stuck.Failed += res.GaveUp
		errs = append(errs, err)
	}
	used := 0
	for _, rec := range deleting {
		if rec.Archived {
			continue
		}
		if used >= share || rep.remaining() == 0 {
			rep.Deferred++
			continue
		}
		published, err := s.redriveDeleting(ctx, rep, rec, now)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if published {
			used++
			rep.Used++
			rep.Stuck.Redriven++
		}
	}
	return errors.Join(errs...)
}

// findStuck reads the cleanup_pending and deleting records older than the
// lease, oldest first, up to the cap each.
func (s *Sweeper) findStuck(ctx context.Context, rep *Report) error {
	before := s.now().Add(-s.cfg.StuckAfter)
	var err error
	rep.stuckPending, _, err = s.page(ctx, rep, store.Query{States: []store.State{store.CleanupPending}, UpdatedBefore: before}, rep.Cap)
	if err != nil {
		return err
	}
	rep.Stuck.Pending = len(rep.stuckPending)
	rep.stuckDeleting, _, err = s.page(ctx, rep, store.Query{States: []store.State{store.Deleting}, UpdatedBefore: before}, rep.Cap)
	rep.Stuck.Deleting = len(rep.stuckDeleting)
	return err
}

// redriveDeleting confirms a stuck delete by reading the snapshot, or
// publishes a fresh cleanup message so that a handler takes the expired
// lease over (with the same request id if a DELETE may have gone out).
func (s *Sweeper) redriveDeleting(ctx context.Context, rep *Report, rec store.Snapshot, now time.Time) (bool, error) {
	if !s.cfg.Policy.Allowed(rec.Project) {
		// Rule 1: no Compute call for a project outside the allowlist;
		// the record is failed for an operator (unless a DELETE may have
		// gone out, which only Compute can tell: left as is).
		failed := false
		_, err := s.cfg.Store.UpdateSnapshot(ctx, rec.Key(), store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			if cur == nil || cur.State != store.Deleting {
				return nil, nil
			}
			next, err := s.cfg.Policy.GiveUp(cur, fmt.Sprintf("project %q is not in SNAPSWEEP_PROJECTS", cur.Project), "not_allowed", now)
			failed = next != nil
			return next, err
		})
		if failed {
			rep.Stuck.Failed++
		}
		return false, err
	}
	snap, err := s.cfg.Compute.Get(ctx, rec.Project, rec.Name)
	seen := lifecycle.Observed{ComputeID: snap.ID, CreationTime: snap.CreationTime}
	var publish, closed, confirmed, failed bool
	var freed int64
	_, uerr := s.cfg.Store.UpdateSnapshot(ctx, rec.Key(), store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		publish, closed, confirmed, failed = false, false, false, false
		switch {
		case cur == nil || cur.State != store.Deleting:
			return nil, nil
		case gce.Classify(err) == gce.ClassNotFound:
			by := "already-gone"
			if lifecycle.Armed(cur) {
				by = "snapsweep"
			}
			confirmed = true
			next, err := s.cfg.Policy.ConfirmFor(cur, by, now)
			freed = 0
			if next != nil && by == "snapsweep" && next.Size != nil {
				freed = next.Size.StorageBytes
			}
			return next, err
		case err != nil:
			return nil, nil // unknown: look again next run
		}
		if why, other := s.cfg.Policy.OtherSnapshot(cur, seen); other {
			closed = true
			return s.cfg.Policy.Vanished(cur, why, now)
		}
		next, pub, rerr := s.cfg.Policy.RedriveDeleting(cur, now)
		publish, failed = pub, next != nil && next.State == store.Failed
		return next, rerr
	})
	if uerr != nil {
		return false, uerr
	}
	switch {
	case confirmed:
		rep.Stuck.ConfirmedDeleted++
		rep.Storage.Freed += freed
	case closed:
		rep.Stuck.Closed++
	case failed:
		rep.Stuck.Failed++
	}
	if err != nil && gce.Classify(err) != gce.ClassNotFound {
		return false, fmt.Errorf("read %s: %w", rec.Key(), err)
	}
	if !publish {
		return false, nil
	}
	reason := events.CleanupReason(rec.CleanupReason)
	if !reason.Valid() || rec.TaskID == "" {
		reason = events.ReasonOrphan
	}
	m := events.CleanupMessage{Project: rec.Project, Name: rec.Name, SessionID: rec.SessionID, TaskID: rec.TaskID,
		Reason: reason, RequestedAt: now}
	if err := s.cfg.Publisher.Publish(ctx, m); err != nil {
		return false, err
	}
	return true, nil
}

// sessions re-judges completed sessions whose outcome is still pending, and
// those whose verdict was written within RejudgeWindow: the engine's
// judgements are debounced (at most one verdict per session per
// cleanup.Judge.Interval), so the last deletions of a session finishing
// together may leave a verdict that does not count them yet. A session
// judged again with nothing new writes nothing, and leaves the window.
func (s *Sweeper) sessions(ctx context.Context, rep *Report) error {
	if s.cfg.Judge == nil || rep.DryRun {
		return nil
	}
	pending, err := s.cfg.Store.ListSessionsByOutcome(ctx, store.OutcomePending, 100)
	if err != nil {
		return err
	}
	rep.Reads += max(len(pending), 1)
	window := s.cfg.RejudgeWindow
	if window <= 0 {
		window = 2 * time.Hour
	}
	recent, err := s.cfg.Store.ListSessionsJudgedSince(ctx, s.now().Add(-window), 500)
	if err != nil {
		return err
	}
	rep.Reads += max(len(recent), 1)
	seen := make(map[string]bool, len(pending)+len(recent))
	var errs []error
	for _, sess := range append(pending, recent...) {
		if sess.State != store.SessionCompleted || seen[sess.SessionID] {
			continue
		}
		seen[sess.SessionID] = true
		v, err := s.cfg.Judge.JudgeNow(ctx, sess.SessionID)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rep.Sessions == nil {
			rep.Sessions = map[store.Outcome]int{}
		}
		rep.Sessions[v]++
	}
	return errors.Join(errs...)
}

// orphans lists the labelled snapshots of every allowlisted project and
// adopts (or reports) the ones the registry does not know. Adoption never
// decides ownership: only snapshots of sessions the registry knows, older
// than the grace period (their report may still be on its way), are
// adopted; snapshots of unknown sessions are reported, never adopted.
func (s *Sweeper) orphans(ctx context.Context, rep *Report) error {
	now := s.now()
	check := &OrphanCheck{Store: s.cfg.Store, Policy: s.cfg.Policy, SessionLabel: s.cfg.SessionLabel}
	defer func() { rep.Reads += check.Reads }()
	rep.listed = map[string]map[string]string{}
	rep.Storage.Kept = map[cost.Reason]cost.Amount{}
	var errs []error
	for _, project := range s.cfg.Projects {
		names := map[string]string{}
		err := s.cfg.Compute.ListByLabel(ctx, project, s.cfg.SessionLabel, func(sn gce.Snapshot) error {
			names[sn.Name] = sn.ID
			key := store.Key{Project: project, Name: sn.Name}
			l, err := check.Check(ctx, project, sn, now)
			switch {
			case err != nil:
				return err
			case l.Registered:
				return s.measure(ctx, rep, l.Record, sn, now)
			case l.Closed:
				return nil
			}
			session := l.Session
			rep.Orphans.Found++
			if len(rep.Orphans.Names) < 20 {
				rep.Orphans.Names = append(rep.Orphans.Names, project+"/"+sn.Name)
			}
			switch a := l.Adoption; {
			case a.Unknown:
				rep.Orphans.UnknownSession++
				if len(rep.Orphans.UnknownSessionNames) < 20 {
					rep.Orphans.UnknownSessionNames = append(rep.Orphans.UnknownSessionNames, project+"/"+sn.Name+" (session "+session+")")
				}
				return nil
			case a.InGrace:
				rep.Orphans.InGrace++
				return nil
			}
			if !s.cfg.AdoptOrphans || rep.DryRun {
				return nil
			}
			found := lifecycle.Found{SessionID: session, ComputeID: sn.ID, SourceDisk: sn.SourceDisk,
				CreationTime: sn.CreationTime.UTC().Truncate(time.Microsecond), Size: sn.Size(now)}
			adopted := false
			_, err = s.cfg.Store.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
				adopted = false
				var closed *store.Snapshot
				if cur != nil && cur.State.Live() {
					if _, other := s.cfg.Policy.OtherSnapshot(cur, lifecycle.Observed{ComputeID: sn.ID, CreationTime: sn.CreationTime}); !other {
						return nil, nil
					}
					// The name belongs to another snapshot now: the record's
					// is gone, and this one is adopted as a new generation.
					var err error
					closed, err = s.cfg.Policy.Vanished(cur, "the name now belongs to another snapshot (Compute id "+sn.ID+")", now)
					if err != nil || closed == nil {
						return nil, err
					}
					rep.Orphans.Vanished++
					cur = closed
				}
				next, err := s.cfg.Policy.Adopt(cur, found, now)
				adopted = next != nil
				if next == nil {
					// Not adopted now (a contender took the name, or the
					// record closed just now): the closing is written.
					return closed, err
				}
				return next, err
			})
			if err != nil {
				return err
			}
			if adopted {
				rep.Orphans.Adopted++
			}
			return nil
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", project, err))
			continue
		}
		rep.listed[project] = names
	}
	rep.Storage.Complete = len(errs) == 0
	rep.Storage.Line = fmt.Sprintf("kept %d labelled snapshots holding %s (%s/month)", rep.Storage.Total.Snapshots,
		cost.Bytes(rep.Storage.Total.Bytes), cost.Money(rep.Storage.Total.MonthlyCost, s.prices().Currency))
	if rep.Orphans.UnknownSession > 0 {
		rep.Checks = append(rep.Checks, Check{Name: "orphans-unknown-session", Status: Degraded,
			Reason: fmt.Sprintf("%d labelled snapshots of sessions this registry never knew (never adopted or deleted): see `snapsweep orphans`", rep.Orphans.UnknownSession)})
		rep.Status = worse(rep.Status, Degraded)
	}
	return errors.Join(errs...)
}

func (s *Sweeper) prices() cost.Prices {
	if s.cfg.Prices != nil {
		return *s.cfg.Prices
	}
	return cost.DefaultPrices()
}

// measure counts a registered snapshot's storage as the listing reports it
// and, when it differs from the record's (still UPDATING last time, or
// grown because an earlier snapshot of its chain was deleted), records it
// (lifecycle.MeasureFor; not in a dry run).
func (s *Sweeper) measure(ctx context.Context, rep *Report, cur *store.Snapshot, sn gce.Snapshot, now time.Time) error {
	size := sn.Size(now)
	if why := cost.ReasonOf(cur.State); why != "" {
		a := cost.AmountOf(size, s.prices())
		k := rep.Storage.Kept[why]
		k.Add(a)
		rep.Storage.Kept[why] = k
		rep.Storage.Total.Add(a)
	}
	seen := lifecycle.Observed{ComputeID: sn.ID, CreationTime: sn.CreationTime, Size: size}
	if rep.DryRun || cur.Size.SameAs(size) {
		return nil
	}
	if next, _ := s.cfg.Policy.MeasureFor(cur, seen, now); next == nil {
		return nil // nothing it would write
	}
	measured := false
	_, err := s.cfg.Store.UpdateSnapshot(ctx, cur.Key(), store.TaskKey{}, func(c *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		next, err := s.cfg.Policy.MeasureFor(c, seen, now)
		measured = next != nil
		return next, err
	})
	if measured {
		rep.Storage.Measured++
	}
	return err
}

// reconcile checks a batch of live records against Compute, continuing
// where the last run stopped, and closes those whose snapshot vanished (or
// whose name now belongs to another snapshot) as vanished. It uses the
// orphan step's listing, and reads a snapshot only when the listing does
// not show it (its label may have been removed).
func (s *Sweeper) reconcile(ctx context.Context, rep *Report) error {
	if rep.DryRun {
		return nil
	}
	after := s.lastReconcileCursor(ctx, rep)
	q := store.Query{States: []store.State{store.Active, store.Retained, store.Held, store.Refused, store.Failed}, OrderByCreated: true,
		Limit: s.cfg.ReconcileBatch, After: after}
	page, err := s.cfg.Store.ListSnapshots(ctx, q)
	if err != nil {
		return err
	}
	rep.Reads += page.Reads
	rep.Reconcile.Next = page.Next
	now := s.now()
	var errs []error
	for _, rec := range page.Snapshots {
		names, listed := rep.listed[rec.Project]
		if rec.Archived || !listed {
			continue
		}
		rep.Reconcile.Checked++
		seen := lifecycle.Observed{}
		if id, ok := names[rec.Name]; ok {
			seen.ComputeID = id
		} else {
			snap, err := s.cfg.Compute.Get(ctx, rec.Project, rec.Name)
			switch {
			case gce.Classify(err) == gce.ClassNotFound:
			case err != nil:
				errs = append(errs, fmt.Errorf("read %s: %w", rec.Key(), err))
				continue
			default:
				seen = lifecycle.Observed{ComputeID: snap.ID, CreationTime: snap.CreationTime}
			}
		}
		gone := seen.ComputeID == "" && seen.CreationTime.IsZero()
		if !gone {
			if _, other := s.cfg.Policy.OtherSnapshot(&rec, seen); !other {
				continue
			}
		}
		closed := false
		_, err := s.cfg.Store.UpdateSnapshot(ctx, rec.Key(), store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			closed = false
			if cur == nil || cur.State != rec.State || !cur.UpdatedAt.Equal(rec.UpdatedAt) {
				return nil, nil // changed since it was read: the next pass looks again
			}
			why := "gone from Compute"
			if !gone {
				why = "the name now belongs to another snapshot (Compute id " + seen.ComputeID + ")"
			}
			next, err := s.cfg.Policy.Vanished(cur, why+" while "+string(cur.State), now)
			closed = next != nil
			return next, err
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if closed {
			rep.Reconcile.Vanished++
		}
	}
	if n := rep.Reconcile.Vanished + rep.Orphans.Vanished; n > 0 {
		rep.Checks = append(rep.Checks, Check{Name: "vanished-snapshots", Status: Degraded,
			Reason: fmt.Sprintf("%d registered snapshots were gone from Compute without snapsweep deleting them: see `snapsweep snapshots list --state vanished`", n)})
		rep.Status = worse(rep.Status, Degraded)
	}
	return errors.Join(errs...)
}

// lastReconcileCursor is where the previous run's reconcile stopped.
func (s *Sweeper) lastReconcileCursor(ctx context.Context, rep *Report) string {
	last, err := s.cfg.Store.LatestHealth(ctx, 1)
	rep.Reads++
	if err != nil || len(last) == 0 {
		return ""
	}
	var prev Report
	if json.Unmarshal([]byte(last[0].Report), &prev) != nil {
		return ""
	}
	return prev.Reconcile.Next
}

// health runs the checks; each has its own short timeout.
func (s *Sweeper) health(ctx context.Context, rep *Report) {
	run := func(name string, fn func(ctx context.Context) error) {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := fn(cctx); err != nil {
			rep.Checks = append(rep.Checks, Check{Name: name, Status: Failing, Reason: err.Error()})
			return
		}
		rep.Checks = append(rep.Checks, Check{Name: name, Status: OK})
	}
	run("firestore-read", s.cfg.Store.Ping)
	run("firestore-write", func(ctx context.Context) error {
		holder := "probe-" + newID()
		if _, err := s.cfg.Store.AcquireLease(ctx, "health-probe", holder, s.cfg.Now(), time.Second); err != nil {
			return err
		}
		return s.cfg.Store.ReleaseLease(ctx, "health-probe", holder)
	})
	if s.cfg.CheckPublish != nil {
		run("pubsub-publish", s.cfg.CheckPublish)
	}
	for _, p := range s.cfg.Projects {
		run("compute:"+p, func(ctx context.Context) error { return s.cfg.Compute.Ping(ctx, p) })
	}
	if s.cfg.Breaker != nil {
		switch st := s.cfg.Breaker(); st {
		case "open":
			rep.Checks = append(rep.Checks, Check{Name: "compute-breaker", Status: Failing, Reason: "circuit breaker open: Compute is failing"})
		case "half-open":
			rep.Checks = append(rep.Checks, Check{Name: "compute-breaker", Status: Degraded, Reason: "circuit breaker half-open: probing Compute"})
		default:
			rep.Checks = append(rep.Checks, Check{Name: "compute-breaker", Status: OK})
		}
	}
	now := s.now()
	for _, st := range []store.State{store.CleanupPending, store.Deleting} {
		p, err := s.cfg.Store.ListSnapshots(ctx, store.Query{States: []store.State{st}, UpdatedBefore: now, Limit: 1})
		name := "oldest-" + string(st)
		if err != nil {
			rep.Checks = append(rep.Checks, Check{Name: name, Status: Failing, Reason: err.Error()})
			continue
		}
		rep.Reads += p.Reads
		c := Check{Name: name, Status: OK, Reason: "none"}
		if len(p.Snapshots) > 0 {
			age := now.Sub(p.Snapshots[0].UpdatedAt).Round(time.Second)
			c.Reason = fmt.Sprintf("oldest %s (%s) for %s", p.Snapshots[0].Key(), st, age)
			switch {
			case age > 4*s.cfg.StuckAfter:
				c.Status = Failing
			case age > s.cfg.StuckAfter:
				c.Status = Degraded
			}
		}
		rep.Checks = append(rep.Checks, c)
	}
	for _, st := range []store.State{store.Failed, store.Refused} {
		n, err := s.cfg.Store.CountSnapshots(ctx, store.Query{States: []store.State{st}})
		name := string(st) + "-snapshots"
		if err != nil {
			rep.Checks = append(rep.Checks, Check{Name: name, Status: Failing, Reason: err.Error()})
			continue
		}
		rep.Reads++
		c := Check{Name: name, Status: OK, Reason: fmt.Sprintf("%d %s", n, st)}
		if n > 0 {
			c.Status = Degraded
			noun := "snapshots"
			if n == 1 {
				noun = "snapshot"
			}
			c.Reason = fmt.Sprintf("%d %s %s: see `snapsweep snapshots list --state %s`", n, noun, st, st)
		}
		rep.Checks = append(rep.Checks, c)
	}
	for _, c := range rep.Checks {
		rep.Status = worse(rep.Status, c.Status)
	}
}

// record stores the report and logs it: one line per run, at ERROR when a
// check fails (naming every failing check), never one per item.
func (s *Sweeper) record(ctx context.Context, rep *Report) {
	for _, c := range rep.Checks {
		rep.Status = worse(rep.Status, c.Status)
	}
	log := telemetry.Logger(ctx)
	var failing []string
	for _, c := range rep.Checks {
		if c.Status == Failing {
			failing = append(failing, c.Name+": "+c.Reason)
		}
	}
	attrs := []any{"runId", rep.RunID, "status", rep.Status, "dryRun", rep.DryRun, "expired", rep.Expired.Found,
		"scheduled", rep.Used, "deferred", rep.Deferred, "orphans", rep.Orphans.Found, "reads", rep.Reads}
	if len(failing) > 0 {
		log.ErrorContext(ctx, "sweep health check failing: "+strings.Join(failing, "; "), attrs...)
	} else {
		log.Log(ctx, slog.LevelInfo, "sweep finished", attrs...)
	}
	body, err := json.Marshal(rep)
	if err != nil {
		return
	}
	at := s.cfg.Now().UTC()
	if err := s.cfg.Store.SaveHealth(context.WithoutCancel(ctx), store.HealthRecord{
		ID: at.Format("20060102T150405.000000000Z") + "-" + sanitize(rep.RunID), At: at, Status: string(rep.Status),
		Report: string(body), ExpireAt: at.Add(s.cfg.HistoryTTL),
	}); err != nil {
		rep.Errors = append(rep.Errors, "store report: "+err.Error())
	}
}
