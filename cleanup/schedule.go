package cleanup

import (
	"context"
	"fmt"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// SnapshotStore is what scheduling needs from the registry.
type SnapshotStore interface {
	UpdateSnapshot(ctx context.Context, key store.Key, task store.TaskKey, fn store.SnapshotFunc) (*store.Snapshot, error)
	ListSnapshots(ctx context.Context, q store.Query) (store.Page, error)
}

// Publisher sends cleanup messages.
type Publisher interface {
	Publish(ctx context.Context, m events.CleanupMessage) error
}

// Scheduler moves eligible snapshots to cleanup_pending and publishes one
// cleanup message for each. Claim first, then publish, and roll the claim
// back when the publish fails: the registry never claims a message that was
// never sent. (A crash between the two leaves a cleanup_pending record
// without a message; the sweep re-drives those after a lease.)
type Scheduler struct {
	Store       SnapshotStore
	Publisher   Publisher
	Policy      lifecycle.Policy
	Now         func() time.Time
	Concurrency int
}

// Now returns the scheduler clock's time at the registry's precision.
func now(clock func() time.Time) time.Time {
	if clock == nil {
		clock = time.Now
	}
	return clock().UTC().Truncate(time.Microsecond)
}

// ScheduleTask schedules the cleanup of every live snapshot of a task that
// the policy allows (for a succeeded task: all of them). Snapshots already
// cleanup_pending get their message again: the event may be a redelivery
// after a crash that lost the first one, and a duplicate message is cheap.
func (s *Scheduler) ScheduleTask(ctx context.Context, tk store.TaskKey, reason events.CleanupReason) (Scheduled, error) {
	var snaps []store.Snapshot
	q := store.Query{SessionID: tk.SessionID, TaskID: tk.TaskID,
		States: []store.State{store.Active, store.Retained, store.CleanupPending}, Limit: 500}
	for {
		page, err := s.Store.ListSnapshots(ctx, q)
		if err != nil {
			return Scheduled{}, fmt.Errorf("list snapshots of task %s: %w", tk.TaskID, err)
		}
		snaps = append(snaps, page.Snapshots...)
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	return s.Schedule(ctx, snaps, reason)
}

// Scheduled reports a scheduling run.
type Scheduled struct {
	RunResult
	// Published counts the cleanup messages sent.
	Published int
	// Skipped counts the snapshots left alone, by reason.
	Skipped map[string]int
	// GaveUp counts the records failed for an operator instead (re-driven
	// too often, or outside the allowlist).
	GaveUp int
}

// Schedule claims and publishes each snapshot the policy allows. It returns
// an error when any publish failed (after rolling that claim back), so that
// the caller nacks and the work is redone.
func (s *Scheduler) Schedule(ctx context.Context, snaps []store.Snapshot, reason events.CleanupReason) (Scheduled, error) {
	return s.schedule(ctx, snaps, reason, false)
}

// Redrive publishes the cleanup messages of stuck cleanup_pending records
// again, counting each re-drive: a record re-driven too often without
// progress is failed for an operator (lifecycle.Policy.MaxRedrives).
func (s *Scheduler) Redrive(ctx context.Context, snaps []store.Snapshot, reason events.CleanupReason) (Scheduled, error) {
	return s.schedule(ctx, snaps, reason, true)
}

func (s *Scheduler) schedule(ctx context.Context, snaps []store.Snapshot, reason events.CleanupReason, redrive bool) (Scheduled, error) {
	units := make([]Unit, 0, len(snaps))
	sus := make([]*scheduleUnit, 0, len(snaps))
	for _, sn := range snaps {
		if sn.Archived {
			continue
		}
		u := &scheduleUnit{s: s, key: sn.Key(), reason: reason, redrive: redrive}
		units, sus = append(units, u), append(sus, u)
	}
	res, err := Executor{Concurrency: s.Concurrency}.Run(ctx, units)
	out := Scheduled{RunResult: res, Skipped: map[string]int{}}
	for _, u := range sus {
		switch {
		case u.published:
			out.Published++
		case u.skipped != "":
			out.Skipped[u.skipped]++
		}
		if u.gaveUp {
			out.GaveUp++
		}
	}
	return out, err
}

// scheduleUnit claims one snapshot and publishes its cleanup message.
type scheduleUnit struct {
	s       *Scheduler
	key     store.Key
	reason  events.CleanupReason
	redrive bool

	claimedAt time.Time // zero unless Execute claimed the record
	skipped   string
	published bool
	gaveUp    bool
}

func (u *scheduleUnit) Name() string { return "schedule cleanup of " + u.key.String() }

func (u *scheduleUnit) Execute(ctx context.Context) error {
	at := now(u.s.Now)
	var msg *events.CleanupMessage
	u.claimedAt, u.skipped, u.published = time.Time{}, "", false
	_, err := u.s.Store.UpdateSnapshot(ctx, u.key, store.TaskKey{}, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		msg, u.claimedAt = nil, time.Time{}
		next, c, err := u.s.Policy.ClaimFor(cur, t, u.reason, u.redrive, at)
		u.skipped, u.gaveUp = c.Skipped, next != nil && next.State == store.Failed
		if err != nil || !c.Publish {
			return next, err
		}
		msg = &events.CleanupMessage{Project: cur.Project, Name: cur.Name, SessionID: cur.SessionID,
			TaskID: cur.TaskID, Reason: c.Reason, RequestedAt: at}
		if c.Fresh {
			u.claimedAt = at
		}
		return next, nil
	})
	if err != nil {
		return fmt.Errorf("claim: %w", err)
	}
	if msg == nil {
		return nil
	}
	if err := u.s.Publisher.Publish(ctx, *msg); err != nil {
		return err
	}
	u.published = true
	return nil
}

// Rollback undoes this unit's claim, and only its own: if anything else
// changed the record since, it is left alone.
func (u *scheduleUnit) Rollback(ctx context.Context) error {
	if u.claimedAt.IsZero() {
		return nil
	}
	at := now(u.s.Now)
	_, err := u.s.Store.UpdateSnapshot(ctx, u.key, store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		return u.s.Policy.UnclaimFor(cur, u.claimedAt, at)
	})
	if err != nil {
		return fmt.Errorf("roll back claim of %s: %w", u.key, err)
	}
	return nil
}

// Plan says what scheduling a cleanup with reason does with s (of task t,
// nil when unknown): "schedule", "republish" (cleanup already requested)
// or "skip", and why. It runs the very claim Schedule runs
// (lifecycle.Policy.ClaimFor) on a copy, so that a dry run (snapsweep
// cleanup without --yes) and the real run cannot disagree; the real run
// schedules what Plan did not skip, and Schedule checks again.
func Plan(p lifecycle.Policy, s *store.Snapshot, t *store.Task, reason events.CleanupReason, now time.Time) (action, why string) {
	next, c, err := p.ClaimFor(s, t, reason, false, now)
	switch {
	case err != nil:
		return "skip", err.Error()
	case c.Publish && !c.Fresh:
		return "republish", "cleanup already requested (" + orDash(s.CleanupReason) + "); the message is sent again"
	case c.Publish && s.State == store.Failed:
		return "schedule", "retry of a failed deletion: " + orDash(s.Error)
	case c.Publish:
		return "schedule", p.Eligible(s, t, now).Why
	case next != nil && next.State == store.Failed:
		return "skip", "would be failed for an operator: " + next.Error
	}
	return "skip", c.Skipped
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
