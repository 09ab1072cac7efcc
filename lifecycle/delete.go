package lifecycle

import (
	"errors"
	"fmt"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

// Lease is one cleanup delivery's claim on a record.
type Lease struct {
	Owner string
	// Attempt is the delete generation the claim holds.
	Attempt int
}

// Holds reports whether the lease still holds cur.
func (l Lease) Holds(cur *store.Snapshot) bool {
	return cur != nil && cur.State == store.Deleting && cur.Attempt == l.Attempt && cur.LeaseOwner == l.Owner
}

// Started says what StartDeleteFor decided.
type Started struct {
	// Lease is set when this delivery now holds the record.
	Lease *Lease
	// Busy is set when another delivery holds a live lease.
	Busy bool
	// Done is set (with Why) when there is nothing to delete; State is the
	// record's state then.
	Done  bool
	Gone  bool // the record is already closed
	State store.State
	Why   string
}

// StartDeleteFor takes the lease of a record for one cleanup message, or
// says why not. A lease that expired is taken over; when a DELETE of the
// earlier claim may have gone out, the attempt (and so Compute's request
// id) is kept, so that repeating it cannot delete twice.
func (p Policy) StartDeleteFor(cur *store.Snapshot, t *store.Task, m events.CleanupMessage, owner string, lease time.Duration, now time.Time) (*store.Snapshot, Started, error) {
	done := func(st store.State, why string) (*store.Snapshot, Started, error) {
		return nil, Started{Done: true, State: st, Why: why}, nil
	}
	switch {
	case cur == nil:
		return done("", "not registered")
	case cur.SessionID != m.SessionID:
		return done(cur.State, fmt.Sprintf("registered to session %q, message names %q", cur.SessionID, m.SessionID))
	case !cur.State.Live():
		s, why, err := done(cur.State, "already "+string(cur.State))
		why.Gone = true
		return s, why, err
	case cur.State == store.Deleting && cur.LeaseUntil.After(now):
		return nil, Started{Busy: true}, nil
	case cur.State == store.Failed && m.Reason != events.ReasonManual:
		return done(cur.State, "failed earlier; needs a manual cleanup: "+cur.Error)
	case cur.State == store.Held, cur.State == store.Refused:
		return done(cur.State, string(cur.State))
	}
	if !armed(cur) {
		if d := p.Eligible(cur, t, now); !d.Eligible {
			next, err := p.SettleStale(cur, t, d.Why, now)
			st := cur.State
			if next != nil {
				st = next.State
			}
			return next, Started{Done: true, State: st, Why: d.Why}, err
		}
	}
	next := clone(cur)
	if cur.State != store.Deleting {
		next.PrevState = cur.State
	}
	if !armed(cur) {
		next.Attempt = cur.Attempt + 1
	}
	next.State = store.Deleting
	next.LeaseUntil, next.LeaseOwner = now.Add(lease), owner
	if next.CleanupReason == "" {
		next.CleanupReason = string(m.Reason)
	}
	out, err := move(StartDelete, cur, next, now)
	return out, Started{Lease: &Lease{Owner: owner, Attempt: next.Attempt}}, err
}

// Observed is what the read right before a delete found in Compute.
type Observed struct {
	ComputeID    string
	CreationTime time.Time
	// Fresh is set while no DELETE can be in effect since the read (the
	// snapshot was READY, and no DELETE went out after it, or Compute
	// refused the one that did).
	Fresh bool
	// Size is the snapshot's storage as the read found it (nil: not read).
	Size *store.Size
}

// ArmResult says what ArmFor decided.
type ArmResult struct {
	// OK is set when the DELETE may go out now.
	OK bool
	// Why says why not; Vanished is set when the record's snapshot is
	// gone (another snapshot holds the name).
	Why      string
	Vanished bool
	// State is the record's state after the check.
	State store.State
}

// ArmFor is the last check before a DELETE (rules 3, 6 and 7): the lease
// still holds the record, the rules still allow the delete with the task as
// it is now, and the snapshot in Compute is the registered one. It records
// the Compute id on first sight and marks the record so that, from now on,
// a hold or a rollback cannot pretend the snapshot is still there. When the
// rules no longer allow the delete, the record is settled back; when the
// snapshot in Compute is another one than the registered one, the record's
// snapshot is gone and the record is closed.
func (p Policy) ArmFor(cur *store.Snapshot, t *store.Task, l Lease, o Observed, lease time.Duration, now time.Time) (*store.Snapshot, ArmResult, error) {
	next, res, err := p.armFor(cur, t, l, o, lease, now)
	switch {
	case next != nil:
		res.State = next.State
	case cur != nil:
		res.State = cur.State
	}
	return next, res, err
}

func (p Policy) armFor(cur *store.Snapshot, t *store.Task, l Lease, o Observed, lease time.Duration, now time.Time) (*store.Snapshot, ArmResult, error) {
	if !l.Holds(cur) || !cur.LeaseUntil.After(now) {
		// Another delivery may have taken the record over (or may at any
		// moment): a claim whose lease ran out never sends a DELETE.
		return nil, ArmResult{Why: "the claim no longer holds the record (lease taken over or expired)"}, nil
	}
	if why, other := p.OtherSnapshot(cur, o); other {
		next, err := p.Vanished(cur, why, now)
		return next, ArmResult{Why: why, Vanished: true}, err
	}
	if d := p.Eligible(cur, t, now); !d.Eligible {
		if armed(cur) && !o.Fresh {
			// A DELETE may be in effect: nothing to undo; a fresh read
			// (a redelivery, or the sweep) settles what happened.
			return nil, ArmResult{Why: d.Why}, nil
		}
		next, err := p.settleStale(cur, t, d.Why, now)
		return next, ArmResult{Why: d.Why}, err
	}
	next := clone(cur)
	if next.ComputeID == "" {
		next.ComputeID = o.ComputeID
	}
	if next.ComputeCreatedAt.IsZero() {
		next.ComputeCreatedAt = o.CreationTime
	}
	if o.Size != nil {
		// The size right before the delete: what the delete frees at most.
		next.Size = o.Size
	}
	next.DeleteSentAt = now
	next.LeaseUntil = now.Add(lease)
	out, err := move(Arm, cur, next, now)
	return out, ArmResult{OK: true}, err
}

// OtherSnapshot reports whether the snapshot Compute holds under the name
// cannot be the registered one (rule 6): another id, or (with no id
// registered yet) created after snapsweep received the report that
// registered it. A reported snapshot existed when its report arrived, and
// Compute's creationTimestamp and snapsweep's clock are both Google's, so
// the comparison does not depend on the job's clock; MaxClockSkew is the
// tolerance all the same.
func (p Policy) OtherSnapshot(cur *store.Snapshot, o Observed) (string, bool) {
	switch {
	case cur.ComputeID != "" && o.ComputeID != "" && cur.ComputeID != o.ComputeID:
		return fmt.Sprintf("the name now belongs to another snapshot (Compute id %s, registered %s)", o.ComputeID, cur.ComputeID), true
	case cur.ComputeID == "" && !cur.Orphan && !o.CreationTime.IsZero() && !cur.RegisteredAt.IsZero() &&
		o.CreationTime.After(cur.RegisteredAt.Add(p.skew())):
		return fmt.Sprintf("the snapshot in Compute was created at %s, after its report arrived at %s: another snapshot of the name",
			o.CreationTime.UTC().Format(time.RFC3339), cur.RegisteredAt.UTC().Format(time.RFC3339)), true
	}
	return "", false
}

// DisarmFor records that Compute refused a DELETE without executing it
// (quota, in use), so that a hold or a failure may land during the wait
// before the next attempt, which arms again.
func (p Policy) DisarmFor(cur *store.Snapshot, l Lease, now time.Time) (*store.Snapshot, error) {
	if !l.Holds(cur) || cur.DeleteSentAt.IsZero() || cur.Operation != "" {
		return nil, nil
	}
	next := clone(cur)
	next.DeleteSentAt = time.Time{}
	return move(Disarm, cur, next, now)
}

// AcceptFor records that Compute accepted the DELETE (its operation, when
// known), not yet confirmed: the record stays deleting until the sweep or a
// redelivery confirms it. The lease is given up, so that a redelivery may
// confirm at once.
func (p Policy) AcceptFor(cur *store.Snapshot, l Lease, op string, now time.Time) (*store.Snapshot, error) {
	if !l.Holds(cur) {
		return nil, nil
	}
	next := clone(cur)
	next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
	if op != "" {
		next.Operation = op
	}
	if next.DeleteSentAt.IsZero() {
		next.DeleteSentAt = now
	}
	return move(Accept, cur, next, now)
}

// ConfirmFor records that a record being deleted is gone: deleted by
// snapsweep, or already gone when it looked (rule 4: counts as deleted).
// The truth that a snapshot is gone is recorded whoever holds the lease.
func (p Policy) ConfirmFor(cur *store.Snapshot, by string, now time.Time) (*store.Snapshot, error) {
	if cur == nil || cur.State != store.Deleting {
		return nil, nil
	}
	next := clone(cur)
	next.State, next.DeletedAt, next.DeletedBy = store.Deleted, now, by
	next.Error, next.ErrorClass = "", ""
	next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
	return move(Confirm, cur, p.promoteContender(cur, next), now)
}

// ReleaseFor gives a claim up after a failure a retry may fix: back to
// cleanup_pending so that a redelivery can claim it at once. A record whose
// DELETE may have gone out is never put back (rule 7): it stays deleting
// until its deletion is confirmed, and only its lease is given up, so that
// a redelivery may repeat the DELETE at once with the same request id
// (which Compute runs at most once) — unless Compute answered that the
// delete definitely did not happen (definite: its operation failed).
func (p Policy) ReleaseFor(cur *store.Snapshot, l Lease, cause, class string, definite bool, now time.Time) (*store.Snapshot, error) {
	if !l.Holds(cur) {
		return nil, nil
	}
	next := clone(cur)
	next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
	next.Error, next.ErrorClass = cause, class
	next.Retries = cur.Retries + 1
	if !armed(cur) || definite {
		next.State = store.CleanupPending
		next.DeleteSentAt, next.Operation = time.Time{}, ""
		next.CleanupRequestedAt = now
	}
	return move(Release, cur, next, now)
}

// RefuseFor records a failed ownership check (rule 2): never deleted by
// snapsweep.
func (p Policy) RefuseFor(cur *store.Snapshot, l Lease, why string, now time.Time) (*store.Snapshot, error) {
	if !l.Holds(cur) || armed(cur) {
		return nil, nil
	}
	next := clone(cur)
	next.State, next.Error, next.ErrorClass = store.Refused, why, "ownership"
	next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
	return move(Refuse, cur, next, now)
}

// FailFor records a permanent error of this claim's delete.
func (p Policy) FailFor(cur *store.Snapshot, l Lease, why, class string, now time.Time) (*store.Snapshot, error) {
	if !l.Holds(cur) {
		return nil, nil
	}
	next := clone(cur)
	next.State, next.Error, next.ErrorClass = store.Failed, why, class
	next.LeaseUntil, next.LeaseOwner, next.DeleteSentAt, next.Operation = time.Time{}, "", time.Time{}, ""
	return move(Fail, cur, next, now)
}

// GiveUp fails a record that cannot make progress (re-driven too often, or
// outside the allowlist), for an operator to look at.
func (p Policy) GiveUp(cur *store.Snapshot, why, class string, now time.Time) (*store.Snapshot, error) {
	if cur == nil || armed(cur) {
		return nil, nil
	}
	return p.giveUp(cur, why, class, now)
}

func (p Policy) giveUp(cur *store.Snapshot, why, class string, now time.Time) (*store.Snapshot, error) {
	switch cur.State {
	case store.CleanupPending, store.Deleting, store.Active, store.Retained:
	default:
		return nil, nil
	}
	next := clone(cur)
	next.State, next.Error, next.ErrorClass = store.Failed, why, class
	next.LeaseUntil, next.LeaseOwner, next.PrevState = time.Time{}, "", ""
	next.DeleteSentAt, next.Operation = time.Time{}, ""
	next.CleanupReason, next.CleanupRequestedAt = "", time.Time{}
	return move(Fail, cur, next, now)
}

// HoldFor puts a record on hold. A record whose DELETE may already have
// gone out cannot be held (rule 7): the hold is refused with the reason.
func (p Policy) HoldFor(cur *store.Snapshot, by, reason string, now time.Time) (*store.Snapshot, error) {
	switch {
	case cur == nil:
		return nil, store.ErrNotFound
	case cur.State == store.Held:
		return nil, nil
	case armed(cur):
		return nil, fmt.Errorf("%w: a DELETE of %s may already have been accepted by Compute (since %s); it cannot be held",
			ErrRefused, cur.Key(), cur.DeleteSentAt.UTC().Format(time.RFC3339))
	case !cur.State.Live():
		return nil, fmt.Errorf("%w: %s is already %s (by %s)", ErrRefused, cur.Key(), cur.State, cur.DeletedBy)
	}
	next := clone(cur)
	next.PrevState, next.State = cur.State, store.Held
	next.HeldBy, next.HoldReason = by, reason
	next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
	return move(Hold, cur, next, now)
}

// ErrRefused is returned when an operator's request breaks a rule.
var ErrRefused = errors.New("refused")

// ReleaseTo is the state a held record returns to: where it was, except
// that a cleanup in progress is not resumed (it is scheduled anew by the
// rules, from active or retained).
func ReleaseTo(prev store.State) store.State {
	switch prev {
	case store.Retained, store.Failed, store.Refused:
		return prev
	}
	return store.Active
}

// UnholdFor releases a held record.
func (p Policy) UnholdFor(cur *store.Snapshot, t *store.Task, now time.Time) (*store.Snapshot, error) {
	if cur == nil {
		return nil, store.ErrNotFound
	}
	if cur.State != store.Held {
		return nil, fmt.Errorf("%w: %s is %s, not held", ErrRefused, cur.Key(), cur.State)
	}
	next := clone(cur)
	next.State = ReleaseTo(cur.PrevState)
	switch next.State {
	case store.Active:
		// The rules decide again (the task may have failed meanwhile).
		next.State, next.ExpiresAt = p.Settled(next, t)
	case store.Retained:
		// Never back to a shorter life than it had.
		if _, exp := p.Settled(next, t); exp.After(next.ExpiresAt) {
			next.ExpiresAt = exp
		}
	}
	next.PrevState, next.HeldBy, next.HoldReason = "", "", ""
	next.CleanupReason, next.CleanupRequestedAt = "", time.Time{}
	return move(Unhold, cur, next, now)
}

// Vanished closes a record whose snapshot is gone without snapsweep
// deleting it (or whose name now belongs to another snapshot). A record
// whose DELETE may have gone out is confirmed deleted instead.
func (p Policy) Vanished(cur *store.Snapshot, why string, now time.Time) (*store.Snapshot, error) {
	if cur == nil || !cur.State.Live() {
		return nil, nil
	}
	next := clone(cur)
	if armed(cur) {
		next.State, next.DeletedBy = store.Deleted, "snapsweep"
	} else {
		next.State, next.DeletedBy = store.Vanished, "vanished"
		next.Error = why
	}
	next.DeletedAt = now
	next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
	return move(Vanish, cur, p.promoteContender(cur, next), now)
}

// JobDeletedFor records that the job deleted the snapshot itself
// (snapshot.deleted); no API call. A report naming another task, or
// another Compute id, is about another snapshot and changes nothing.
//
// A deletion stamped before the record's snapshot was reported may be about
// an earlier snapshot of the name: it is ignored (if the record's snapshot
// is gone too, the engine's read or the sweep's reconcile closes it). A
// deletion naming a Compute id closes a record whose id is not known yet
// and records the id: the job knows which snapshot it deleted.
func (p Policy) JobDeletedFor(cur *store.Snapshot, sessionID, taskID, computeID string, at, now time.Time) (*store.Snapshot, error) {
	if c := contenderOf(cur); c != nil && c.SessionID == sessionID && c.TaskID == taskID &&
		(computeID == "" || c.ComputeID == "" || c.ComputeID == computeID) && (computeID == "" || computeID != cur.ComputeID) {
		// The contender's snapshot is gone: the name is no longer contested.
		next := clone(cur)
		next.Contender = nil
		return move(Contest, cur, next, now)
	}
	if cur != nil && (!cur.State.Live() || cur.SessionID != sessionID || cur.TaskID != taskID ||
		(computeID != "" && cur.ComputeID != "" && computeID != cur.ComputeID) || at.Before(cur.CreatedAt)) {
		return nil, nil
	}
	if cur != nil && computeID == "" && cur.ComputeID != "" && cur.Generation > 1 && at.Before(cur.CreatedAt.Add(2*p.WithDefaults().MaxClockSkew)) {
		// A deletion that names no Compute id, stamped near the report of
		// the name's newer generation, may be of the earlier snapshot (a
		// job deleting a snapshot and creating another of the name in the
		// same minute; either stamp may be off by the skew). Closing on it
		// would leak the newer snapshot for good (its record says deleted,
		// and a closed record of its very id is never adopted); keeping the
		// record costs at most a read that finds the snapshot gone. Only a
		// record that knows its Compute id is kept: the last check then
		// tells its snapshot from any later one of the name (without the
		// id, a later snapshot created within the skew could pass for it).
		return nil, nil
	}
	next := &store.Snapshot{SessionID: sessionID, TaskID: taskID, RegisteredAt: now, ComputeID: computeID, Generation: 1}
	if cur != nil {
		next = clone(cur)
	}
	next.State, next.DeletedAt, next.DeletedBy = store.Deleted, at, "job"
	next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
	if next.ComputeID == "" {
		next.ComputeID = computeID
	}
	if cur == nil {
		return move(JobDeleted, cur, next, now)
	}
	return move(JobDeleted, cur, p.promoteContender(cur, next), now)
}

// contenderOf is the live record's contender, if any.
func contenderOf(cur *store.Snapshot) *store.Contender {
	if cur == nil || !cur.State.Live() {
		return nil
	}
	return cur.Contender
}

// MeasureFor records the storage a fresh read of a kept snapshot found
// (the sweep's listing or read): its size changes while Compute is still
// computing it (UPDATING) and when an earlier snapshot of its chain is
// deleted (the data it still needs moves into it). Only a settled record
// whose snapshot the read is, and only a change, is written; a record being
// cleaned is measured by the last check before its DELETE (ArmFor) instead.
func (p Policy) MeasureFor(cur *store.Snapshot, o Observed, now time.Time) (*store.Snapshot, error) {
	if cur == nil || cur.Archived || o.Size == nil || cur.Size.SameAs(o.Size) {
		return nil, nil
	}
	switch cur.State {
	case store.Active, store.Retained, store.Failed, store.Refused, store.Held:
	default:
		return nil, nil
	}
	if cur.ComputeID != "" && o.ComputeID != cur.ComputeID {
		return nil, nil
	}
	if _, other := p.OtherSnapshot(cur, o); other {
		return nil, nil
	}
	next := clone(cur)
	next.Size, next.PrevSize = o.Size, cur.Size
	return move(Measure, cur, next, now)
}
