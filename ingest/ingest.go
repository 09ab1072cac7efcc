// Package ingest applies migration events to the registry: it records
// sessions and tasks, registers snapshots, keeps failed tasks' snapshots and
// schedules the cleanup of succeeded ones.
//
// Every event is idempotent and order-independent. A task's state is a
// join over the events seen (the latest source time wins, a success
// outranks a failure at the same time), snapshot records are created once
// and never resurrected, and the side effects (cleanup scheduling) are
// derived from the resulting state rather than from the event, so a
// duplicate or late event re-drives the same work instead of undoing it.
//
// It changes records only through package lifecycle; it must not call
// Compute or decide a deletion itself (the scheduler and the engine do).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// Registry is what ingestion needs from the store.
type Registry interface {
	cleanup.SnapshotStore
	UpdateTask(ctx context.Context, key store.TaskKey, fn store.TaskFunc) (*store.Task, error)
	ApplyTaskEvent(ctx context.Context, key store.TaskKey, eventID string, fn store.TaskFunc) (*store.Task, error)
	UpdateSession(ctx context.Context, id string, fn store.SessionFunc) (*store.Session, error)
	GetSession(ctx context.Context, id string) (*store.Session, error)
	CreateSession(ctx context.Context, s *store.Session) (bool, error)
	ListTasks(ctx context.Context, sessionID string, state store.TaskState) ([]store.Task, error)
	Processed(ctx context.Context, eventID string) (hash string, found bool, err error)
	MarkProcessed(ctx context.Context, eventID, hash string, at, expireAt time.Time) error
	ApplySnapshotEvent(ctx context.Context, key store.Key, task store.TaskKey, mark store.Mark, fn store.SnapshotFunc) (*store.Snapshot, error)
}

// SessionJudge evaluates a session's cleanup outcome once its work is done.
// session.completed judges at once (one judgement per event, not per
// snapshot: no hot document).
type SessionJudge interface {
	JudgeNow(ctx context.Context, sessionID string) (store.Outcome, error)
}

// Processor applies events.
type Processor struct {
	Store     Registry
	Scheduler *cleanup.Scheduler
	// Policy holds the rules; its allowlist and clock-skew bound are
	// enforced here, whatever the caller checked before.
	Policy lifecycle.Policy
	Judge  SessionJudge // optional
	Now    func() time.Time
	// ProcessedTTL is how long processed-event markers are kept (default 7 days).
	ProcessedTTL time.Duration
	// Registered counts newly registered snapshots (optional).
	Registered metric.Int64Counter

	// known remembers sessions whose document exists (sessions are never
	// deleted), so that their events skip the read that ensures it. It is
	// only a saving: an instance that does not know a session reads it.
	mu    sync.Mutex
	known map[string]bool
}

// maxKnownSessions bounds Processor.known; past it the memory starts over.
const maxKnownSessions = 10_000

func (p *Processor) knownSession(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.known[id]
}

func (p *Processor) rememberSession(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known == nil || len(p.known) >= maxKnownSessions {
		p.known = make(map[string]bool)
	}
	p.known[id] = true
}

// Outcome says what applying an event did.
type Outcome struct {
	// Duplicate is set when the event was applied before.
	Duplicate bool
	// Scheduled counts the cleanup messages published.
	Scheduled int
	// Note is a short human-readable account for the log line.
	Note string
}

func (p *Processor) now() time.Time {
	if p.Now == nil {
		return time.Now().UTC().Truncate(time.Microsecond)
	}
	return p.Now().UTC().Truncate(time.Microsecond)
}

// Apply applies one validated event. An error means the event was not fully
// applied and must be redelivered (the caller answers 5xx); everything done
// before the error is safe to repeat. An event that can never be applied
// (a project outside the allowlist, a time too far in the future, an id
// already used by another event) returns a *events.RejectError and changes
// nothing: the caller acknowledges and records it.
func (p *Processor) Apply(ctx context.Context, ev events.Event) (Outcome, error) {
	if err := p.admit(ev); err != nil {
		return Outcome{}, err
	}
	hash := ev.ContentHash()
	ttl := p.ProcessedTTL
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	var out Outcome
	var err error
	switch ev.Type {
	case events.SnapshotCreated:
		// One transaction registers the snapshot and marks the event
		// processed; it refuses an event applied before without a read.
		return p.snapshotCreated(ctx, ev, hash, ttl)
	case events.TaskStarted, events.TaskCompleted, events.TaskFailed:
		// The task's transaction reads the event's marker with the task.
		out, err = p.task(ctx, ev)
		var applied *store.ProcessedError
		if errors.As(err, &applied) {
			if applied.Hash != "" && applied.Hash != hash {
				return Outcome{}, conflicting(ev)
			}
			return Outcome{Duplicate: true, Note: "duplicate event"}, nil
		}
	default:
		seen, done, perr := p.Store.Processed(ctx, ev.ID)
		if perr != nil {
			return Outcome{}, perr
		}
		if done {
			if seen != "" && seen != hash {
				return Outcome{}, conflicting(ev)
			}
			return Outcome{Duplicate: true, Note: "duplicate event"}, nil
		}
	}
	switch ev.Type {
	case events.SessionStarted:
		err = p.sessionStarted(ctx, ev)
	case events.SessionCompleted:
		out, err = p.sessionCompleted(ctx, ev)
	case events.TaskStarted, events.TaskCompleted, events.TaskFailed:
	case events.SnapshotDeleted:
		err = p.snapshotDeleted(ctx, ev)
	default:
		return Outcome{}, fmt.Errorf("unhandled event type %q", ev.Type)
	}
	if err != nil {
		return out, err
	}
	at := p.now()
	if err := p.Store.MarkProcessed(ctx, ev.ID, hash, at, at.Add(ttl)); err != nil {
		return out, err
	}
	return out, nil
}

// conflicting is the rejection of an event reusing the id of another.
func conflicting(ev events.Event) error {
	return &events.RejectError{Reason: events.ReasonConflictingDuplicate, Field: "id",
		Detail: fmt.Sprintf("event id %q was already used by an event with other content", ev.ID)}
}

// admit applies the rules an event must pass before it may change
// anything: its snapshot's project is allowlisted (rule 1) and it is not
// stamped further in the future than the clock-skew bound.
func (p *Processor) admit(ev events.Event) error {
	if ev.Snapshot != nil {
		if err := p.Policy.Projects.Check(ev.Snapshot.Project); err != nil {
			return err
		}
	}
	skew := p.Policy.WithDefaults().MaxClockSkew
	if now := p.now(); ev.Time.After(now.Add(skew)) {
		return &events.RejectError{Reason: events.ReasonFutureTime, Field: "time",
			Detail: fmt.Sprintf("time %s is %s ahead of snapsweep's clock (%s), more than SNAPSWEEP_MAX_CLOCK_SKEW=%s",
				ev.Time.UTC().Format(time.RFC3339Nano), ev.Time.Sub(now).Round(time.Second), now.Format(time.RFC3339), skew)}
	}
	return nil
}

// ensureSession records the session if it is new. Only the first event of a
// session writes; later ones read, so the session document is not a
// contention point for every task event.
func (p *Processor) ensureSession(ctx context.Context, id string, at time.Time, moveBack bool) error {
	if !moveBack && p.knownSession(id) {
		return nil
	}
	if err := p.ensureSessionDoc(ctx, id, at, moveBack); err != nil {
		return err
	}
	p.rememberSession(id)
	return nil
}

func (p *Processor) ensureSessionDoc(ctx context.Context, id string, at time.Time, moveBack bool) error {
	// A plain read first: for every event but a session's first, the
	// session is there already and nothing is written.
	cur, err := p.Store.GetSession(ctx, id)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	if err != nil {
		// The first events of a session arrive together: create without a
		// transaction (a precondition that never contends); the losers of
		// the race read the winner's record.
		created, err := p.Store.CreateSession(ctx, &store.Session{SessionID: id, State: store.SessionRunning, StartedAt: at, UpdatedAt: p.now()})
		if err != nil || created {
			return err
		}
		if cur, err = p.Store.GetSession(ctx, id); err != nil {
			return err
		}
	}
	if !moveBack || (!cur.StartedAt.IsZero() && !cur.StartedAt.After(at)) {
		// Only session.started moves the start back. Doing it for every
		// event older than the recorded start (half of a shuffled stream)
		// made those events contend on the one session document until they
		// livelocked (found by the chaos run).
		return nil
	}
	// session.started older than the recorded start: move the start back.
	_, err = p.Store.UpdateSession(ctx, id, func(cur *store.Session) (*store.Session, error) {
		if cur != nil && !cur.StartedAt.IsZero() && !cur.StartedAt.After(at) {
			return nil, nil
		}
		next := store.Session{State: store.SessionRunning}
		if cur != nil {
			next = *cur
		}
		next.StartedAt, next.UpdatedAt = at, p.now()
		return &next, nil
	})
	return err
}

func (p *Processor) sessionStarted(ctx context.Context, ev events.Event) error {
	return p.ensureSession(ctx, ev.SessionID, ev.Time.UTC().Truncate(time.Microsecond), true)
}

func (p *Processor) sessionCompleted(ctx context.Context, ev events.Event) (Outcome, error) {
	at := ev.Time.UTC().Truncate(time.Microsecond)
	_, err := p.Store.UpdateSession(ctx, ev.SessionID, func(cur *store.Session) (*store.Session, error) {
		next := store.Session{StartedAt: at}
		if cur != nil {
			next = *cur
		}
		if next.State == store.SessionCompleted && !next.CompletedAt.IsZero() && !next.CompletedAt.Before(at) {
			return nil, nil
		}
		next.State = store.SessionCompleted
		next.CompletedAt = at
		if next.Outcome == "" {
			next.Outcome = store.OutcomePending
		}
		next.UpdatedAt = p.now()
		return &next, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	tasks, err := p.Store.ListTasks(ctx, ev.SessionID, store.TaskSucceeded)
	if err != nil {
		return Outcome{}, err
	}
	out := Outcome{}
	var errs []error
	for _, t := range tasks {
		res, err := p.Scheduler.ScheduleTask(ctx, t.Key(), events.ReasonSessionCompleted)
		out.Scheduled += res.Published
		if err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	if p.Judge != nil {
		outcome, err := p.Judge.JudgeNow(ctx, ev.SessionID)
		if err != nil {
			return out, err
		}
		out.Note = fmt.Sprintf("%d succeeded tasks; outcome %s", len(tasks), outcome)
	}
	return out, nil
}

func taskState(t events.Type) store.TaskState {
	switch t {
	case events.TaskCompleted:
		return store.TaskSucceeded
	case events.TaskFailed:
		return store.TaskFailed
	}
	return store.TaskRunning
}

// task applies a task event. Its transaction refuses an event applied
// before (*store.ProcessedError) before anything is written; the session
// is ensured after it, so that a refused event creates nothing either (a
// crash in between redelivers the event, whose marker is written last).
func (p *Processor) task(ctx context.Context, ev events.Event) (Outcome, error) {
	key := store.TaskKey{SessionID: ev.SessionID, TaskID: ev.TaskID}
	st := taskState(ev.Type)
	at := ev.Time.UTC().Truncate(time.Microsecond)
	t, err := p.Store.ApplyTaskEvent(ctx, key, ev.ID, func(cur *store.Task) (*store.Task, error) {
		return joinTask(cur, ev, st, at, p.now()), nil
	})
	if err != nil {
		return Outcome{}, err
	}
	if err := p.ensureSession(ctx, ev.SessionID, at, false); err != nil {
		return Outcome{}, err
	}
	out := Outcome{Note: "task " + string(t.State)}
	if !t.FailedAt.IsZero() || t.State == store.TaskFailed {
		// A failure protects the snapshots taken before it even when a
		// retry is the task's latest state, whether it runs or succeeded.
		n, err := p.retainTask(ctx, t)
		out.Note += fmt.Sprintf("; %d snapshots retained", n)
		if err != nil {
			return out, err
		}
	}
	if t.State == store.TaskSucceeded {
		res, err := p.Scheduler.ScheduleTask(ctx, key, events.ReasonTaskCompleted)
		out.Scheduled = res.Published
		return out, err
	}
	return out, nil
}

// joinTask merges an event into a task record. It returns nil when the
// event changes nothing, which makes duplicates and stale events no-ops.
// The latest event sets the state (a failure wins a tie); every failure is
// also remembered on its own (FailedAt), so that neither a later retry nor
// a start stamped by a skewed clock hides it.
func joinTask(cur *store.Task, ev events.Event, st store.TaskState, at, now time.Time) *store.Task {
	next := store.Task{}
	if cur != nil {
		next = *cur
	}
	changed := cur == nil
	if st == store.TaskRunning && (next.StartedAt.IsZero() || at.Before(next.StartedAt)) {
		next.StartedAt = at
		changed = true
	}
	if st == store.TaskFailed && at.After(next.FailedAt) {
		next.FailedAt, next.FailureSeenAt = at, now
		changed = true
	}
	later := cur == nil || at.After(next.StateTime) ||
		(at.Equal(next.StateTime) && st.Rank() > next.State.Rank())
	if later {
		next.State = st
		next.StateTime = at
		next.StateEventID = ev.ID
		if st == store.TaskFailed {
			next.Error = ev.Error
		}
		if st != store.TaskRunning {
			next.FinishedAt = at
		}
		changed = true
	}
	if !changed {
		return nil
	}
	next.UpdatedAt = now
	return &next
}

// retainTask settles a task's active and retained snapshots after a
// failure: retained, with the longest failed-task retention they were given.
func (p *Processor) retainTask(ctx context.Context, t *store.Task) (int, error) {
	q := store.Query{SessionID: t.SessionID, TaskID: t.TaskID, States: []store.State{store.Active, store.Retained}, Limit: 500}
	n := 0
	for {
		page, err := p.Store.ListSnapshots(ctx, q)
		if err != nil {
			return n, err
		}
		for _, s := range page.Snapshots {
			if s.Archived {
				continue
			}
			changed, err := p.retain(ctx, s.Key(), t.Key())
			if err != nil {
				return n, err
			}
			if changed {
				n++
			}
		}
		if page.Next == "" {
			return n, nil
		}
		q.After = page.Next
	}
}

// retain settles one snapshot after its task failed. The record is
// expected to name the failed task (a hint: it is handed its own task).
func (p *Processor) retain(ctx context.Context, key store.Key, task store.TaskKey) (bool, error) {
	now := p.now()
	changed := false
	_, err := p.Store.UpdateSnapshotHint(ctx, key, task, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		next, err := p.Policy.RetainFor(cur, t, now)
		changed = next != nil
		return next, err
	})
	return changed, err
}

// snapshotCreated registers the snapshot and marks the event processed in
// one transaction (store.ApplySnapshotEvent): an event applied before is
// refused by the marker's precondition, without a read. The cleanup of a
// snapshot whose task already succeeded (events out of order) is derived
// from the state, so that a redelivery after a failed publish, refused as
// applied, still schedules it.
func (p *Processor) snapshotCreated(ctx context.Context, ev events.Event, hash string, ttl time.Duration) (Outcome, error) {
	if err := p.ensureSession(ctx, ev.SessionID, ev.Time.UTC().Truncate(time.Microsecond), false); err != nil {
		return Outcome{}, err
	}
	key := store.Key{Project: ev.Snapshot.Project, Name: ev.Snapshot.Name}
	tk := store.TaskKey{SessionID: ev.SessionID, TaskID: ev.TaskID}
	now := p.now()
	report := lifecycle.Report{SessionID: ev.SessionID, TaskID: ev.TaskID, CreatedAt: ev.Time.UTC().Truncate(time.Microsecond),
		SourceDisk: ev.Snapshot.SourceDisk, Retention: ev.Snapshot.Retention, ComputeID: ev.Snapshot.ID}
	var reg lifecycle.Registered
	var taskDone bool
	var seen *store.Snapshot
	mark := store.Mark{EventID: ev.ID, Hash: hash, At: now, ExpireAt: now.Add(ttl)}
	rec, err := p.Store.ApplySnapshotEvent(ctx, key, tk, mark, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		taskDone, seen = t != nil && t.State == store.TaskSucceeded, cur
		next, r, err := p.Policy.RegisterReport(cur, t, report, now)
		reg = r
		return next, err
	})
	var applied *store.ProcessedError
	dup := errors.As(err, &applied)
	switch {
	case dup && applied.Hash != "" && applied.Hash != hash:
		return Outcome{}, conflicting(ev)
	case dup:
		// Applied before: the record as stored is the event's result.
		rec, reg = seen, lifecycle.Registered{}
	case err != nil:
		return Outcome{}, err
	}
	if reg.New && p.Registered != nil {
		p.Registered.Add(ctx, 1)
	}
	out := Outcome{Duplicate: dup, Note: reg.Note}
	if dup {
		out.Note = "duplicate event"
	}
	// If the task already succeeded (events out of order), clean up now.
	if taskDone && rec != nil && rec.TaskID == ev.TaskID && (rec.State == store.Active || rec.State == store.CleanupPending) {
		res, err := p.Scheduler.Schedule(ctx, []store.Snapshot{*rec}, events.ReasonTaskCompleted)
		out.Scheduled, out.Note = res.Published, out.Note+"; "+string(rec.State)
		return out, err
	}
	return out, nil
}

func (p *Processor) snapshotDeleted(ctx context.Context, ev events.Event) error {
	key := store.Key{Project: ev.Snapshot.Project, Name: ev.Snapshot.Name}
	now := p.now()
	at := ev.Time.UTC().Truncate(time.Microsecond)
	_, err := p.Store.UpdateSnapshot(ctx, key, store.TaskKey{SessionID: ev.SessionID, TaskID: ev.TaskID},
		func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			return p.Policy.JobDeletedFor(cur, ev.SessionID, ev.TaskID, ev.Snapshot.ID, at, now)
		})
	return err
}
