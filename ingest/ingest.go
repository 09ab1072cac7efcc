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
package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

// Registry is what ingestion needs from the store.
type Registry interface {
	cleanup.SnapshotStore
	UpdateTask(ctx context.Context, key store.TaskKey, fn store.TaskFunc) (*store.Task, error)
	UpdateSession(ctx context.Context, id string, fn store.SessionFunc) (*store.Session, error)
	GetSession(ctx context.Context, id string) (*store.Session, error)
	CreateSession(ctx context.Context, s *store.Session) (bool, error)
	ListTasks(ctx context.Context, sessionID string, state store.TaskState) ([]store.Task, error)
	IsProcessed(ctx context.Context, eventID string) (bool, error)
	MarkProcessed(ctx context.Context, eventID string, at, expireAt time.Time) error
}

// SessionJudge evaluates a session's cleanup outcome once its work is done.
type SessionJudge interface {
	JudgeSession(ctx context.Context, sessionID string) (store.Outcome, error)
}

// Processor applies events.
type Processor struct {
	Store     Registry
	Scheduler *cleanup.Scheduler
	Policy    cleanup.Policy
	Judge     SessionJudge // optional
	Now       func() time.Time
	// ProcessedTTL is how long processed-event markers are kept (default 7 days).
	ProcessedTTL time.Duration
	// Registered counts newly registered snapshots (optional).
	Registered metric.Int64Counter
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
// before the error is safe to repeat.
func (p *Processor) Apply(ctx context.Context, ev events.Event) (Outcome, error) {
	done, err := p.Store.IsProcessed(ctx, ev.ID)
	if err != nil {
		return Outcome{}, err
	}
	if done {
		return Outcome{Duplicate: true, Note: "duplicate event"}, nil
	}
	var out Outcome
	switch ev.Type {
	case events.SessionStarted:
		err = p.sessionStarted(ctx, ev)
	case events.SessionCompleted:
		out, err = p.sessionCompleted(ctx, ev)
	case events.TaskStarted, events.TaskCompleted, events.TaskFailed:
		out, err = p.task(ctx, ev)
	case events.SnapshotCreated:
		out, err = p.snapshotCreated(ctx, ev)
	case events.SnapshotDeleted:
		err = p.snapshotDeleted(ctx, ev)
	default:
		return Outcome{}, fmt.Errorf("unhandled event type %q", ev.Type)
	}
	if err != nil {
		return out, err
	}
	ttl := p.ProcessedTTL
	if ttl <= 0 {
		ttl = 7 * 24 * time.Hour
	}
	at := p.now()
	if err := p.Store.MarkProcessed(ctx, ev.ID, at, at.Add(ttl)); err != nil {
		return out, err
	}
	return out, nil
}

// ensureSession records the session if it is new. Only the first event of a
// session writes; later ones read, so the session document is not a
// contention point for every task event.
func (p *Processor) ensureSession(ctx context.Context, id string, at time.Time, moveBack bool) error {
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
		outcome, err := p.Judge.JudgeSession(ctx, ev.SessionID)
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

func (p *Processor) task(ctx context.Context, ev events.Event) (Outcome, error) {
	if err := p.ensureSession(ctx, ev.SessionID, ev.Time.UTC().Truncate(time.Microsecond), false); err != nil {
		return Outcome{}, err
	}
	key := store.TaskKey{SessionID: ev.SessionID, TaskID: ev.TaskID}
	st := taskState(ev.Type)
	at := ev.Time.UTC().Truncate(time.Microsecond)
	t, err := p.Store.UpdateTask(ctx, key, func(cur *store.Task) (*store.Task, error) {
		return joinTask(cur, ev, st, at, p.now()), nil
	})
	if err != nil {
		return Outcome{}, err
	}
	switch t.State {
	case store.TaskSucceeded:
		res, err := p.Scheduler.ScheduleTask(ctx, key, events.ReasonTaskCompleted)
		return Outcome{Scheduled: res.Published, Note: "task succeeded"}, err
	case store.TaskFailed:
		n, err := p.retainTask(ctx, t)
		return Outcome{Note: fmt.Sprintf("task failed; %d snapshots retained", n)}, err
	}
	return Outcome{Note: "task " + string(t.State)}, nil
}

// joinTask merges an event into a task record. It returns nil when the
// event changes nothing, which makes duplicates and stale events no-ops.
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

// retainTask moves a failed task's active snapshots to retained, with the
// failed-task retention as their expiry.
func (p *Processor) retainTask(ctx context.Context, t *store.Task) (int, error) {
	q := store.Query{SessionID: t.SessionID, TaskID: t.TaskID, States: []store.State{store.Active}, Limit: 500}
	n := 0
	for {
		page, err := p.Store.ListSnapshots(ctx, q)
		if err != nil {
			return n, err
		}
		for _, s := range page.Snapshots {
			if err := p.settle(ctx, s.Key()); err != nil {
				return n, err
			}
			n++
		}
		if page.Next == "" {
			return n, nil
		}
		q.After = page.Next
	}
}

// settle brings an active or retained snapshot in line with its task.
func (p *Processor) settle(ctx context.Context, key store.Key) error {
	now := p.now()
	_, err := p.Store.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		if cur == nil || (cur.State != store.Active && cur.State != store.Retained) {
			return nil, nil
		}
		st, exp := p.Policy.Settle(cur, t)
		if st == cur.State && exp.Equal(cur.ExpiresAt) {
			return nil, nil
		}
		next := *cur
		next.State, next.ExpiresAt, next.UpdatedAt = st, exp, now
		return &next, nil
	})
	return err
}

func (p *Processor) snapshotCreated(ctx context.Context, ev events.Event) (Outcome, error) {
	if err := p.ensureSession(ctx, ev.SessionID, ev.Time.UTC().Truncate(time.Microsecond), false); err != nil {
		return Outcome{}, err
	}
	key := store.Key{Project: ev.Snapshot.Project, Name: ev.Snapshot.Name}
	tk := store.TaskKey{SessionID: ev.SessionID, TaskID: ev.TaskID}
	now := p.now()
	createdAt := ev.Time.UTC().Truncate(time.Microsecond)
	var conflict string
	var taskDone, created bool
	rec, err := p.Store.UpdateSnapshot(ctx, key, tk, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		conflict, created = "", false
		taskDone = t != nil && t.State == store.TaskSucceeded
		if cur != nil && (cur.SessionID != ev.SessionID || cur.TaskID != ev.TaskID) {
			// The same project/name reported by another task: keep the
			// first registration; ownership is checked against it.
			conflict = fmt.Sprintf("already registered to session %s task %s", cur.SessionID, cur.TaskID)
			return nil, nil
		}
		if cur != nil && !cur.CreatedAt.IsZero() {
			return nil, nil // duplicate
		}
		next := store.Snapshot{SessionID: ev.SessionID, TaskID: ev.TaskID, RegisteredAt: now}
		if cur != nil {
			next = *cur // registered by an earlier snapshot.deleted: fill in, keep its state
		}
		next.CreatedAt = createdAt
		next.SourceDisk = ev.Snapshot.SourceDisk
		next.Retention = ev.Snapshot.Retention
		next.UpdatedAt = now
		if cur == nil {
			next.State, next.ExpiresAt = p.Policy.Settle(&next, t)
			created = true
		}
		return &next, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	if conflict != "" {
		return Outcome{Note: conflict}, nil
	}
	if created && p.Registered != nil {
		p.Registered.Add(ctx, 1)
	}
	// If the task already succeeded (events out of order), clean up now.
	if taskDone && rec != nil && (rec.State == store.Active || rec.State == store.CleanupPending) {
		res, err := p.Scheduler.Schedule(ctx, []store.Snapshot{*rec}, events.ReasonTaskCompleted)
		return Outcome{Scheduled: res.Published, Note: "registered " + string(rec.State)}, err
	}
	return Outcome{Note: "registered"}, nil
}

func (p *Processor) snapshotDeleted(ctx context.Context, ev events.Event) error {
	key := store.Key{Project: ev.Snapshot.Project, Name: ev.Snapshot.Name}
	now := p.now()
	at := ev.Time.UTC().Truncate(time.Microsecond)
	_, err := p.Store.UpdateSnapshot(ctx, key, store.TaskKey{SessionID: ev.SessionID, TaskID: ev.TaskID},
		func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			if cur != nil && cur.State == store.Deleted {
				return nil, nil
			}
			if cur != nil && (cur.SessionID != ev.SessionID || cur.TaskID != ev.TaskID) {
				return nil, nil // not this task's snapshot: ignore the claim
			}
			next := store.Snapshot{SessionID: ev.SessionID, TaskID: ev.TaskID, RegisteredAt: now}
			if cur != nil {
				next = *cur
			}
			next.State = store.Deleted
			next.DeletedAt = at
			next.DeletedBy = "job"
			next.LeaseUntil = time.Time{}
			next.UpdatedAt = now
			return &next, nil
		})
	return err
}
