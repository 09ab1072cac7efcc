package lifecycle

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

// Transition names one kind of change of a snapshot record.
type Transition string

// The transitions of a snapshot record. Table says which states each may
// start from and end in; docs/state-machine.md lists the same table (a test
// keeps the two equal).
const (
	Register      Transition = "register"       // snapshot.created of a new name
	Adopt         Transition = "adopt"          // the sweep adopts a labelled, unreported snapshot of a known session
	TakeOver      Transition = "take-over"      // a report takes an adopted record over
	NewGeneration Transition = "new-generation" // a name reused in Compute: a new record, the old one archived
	Retain        Transition = "retain"         // the task failed: kept as the rollback path
	Claim         Transition = "claim"          // a cleanup message is (re)published
	Unclaim       Transition = "unclaim"        // the publish failed: the claim is rolled back
	Settle        Transition = "settle"         // a stale cleanup request: back where the policy says
	StartDelete   Transition = "start-delete"   // the cleanup handler takes the lease
	Arm           Transition = "arm"            // the rules hold right before the DELETE: it may go out
	Disarm        Transition = "disarm"         // Compute refused the DELETE without executing it
	Accept        Transition = "accept"         // Compute accepted the DELETE (operation recorded)
	Confirm       Transition = "confirm"        // the snapshot is gone
	Release       Transition = "release"        // a retry may fix it: back to cleanup_pending
	Refuse        Transition = "refuse"         // the ownership label is missing or wrong
	Fail          Transition = "fail"           // a permanent error, or too many re-drives without progress
	Hold          Transition = "hold"           // an operator holds it
	Unhold        Transition = "unhold"         // an operator releases the hold
	Vanish        Transition = "vanish"         // the snapshot is gone, and snapsweep did not delete it
	JobDeleted    Transition = "job-deleted"    // snapshot.deleted: the job deleted it itself
	Contest       Transition = "contest"        // another task's report of the name that cannot be told apart
	Measure       Transition = "measure"        // a fresh read of a kept snapshot's storage
)

// Edge is one row of the transition table.
type Edge struct {
	Transition Transition
	// Create is set for transitions that may start from no record.
	Create bool
	From   []store.State
	To     []store.State
}

var (
	none     []store.State
	settled  = []store.State{store.Active, store.Retained}
	liveAll  = store.LiveStates()
	unclosed = []store.State{store.Active, store.Retained, store.CleanupPending, store.Deleting, store.Failed, store.Refused, store.Held}
	kept     = []store.State{store.Active, store.Retained, store.Failed, store.Refused, store.Held}
)

// Table is every allowed transition.
var Table = []Edge{
	{Register, true, none, settled},
	{Adopt, true, none, []store.State{store.Active}},
	{TakeOver, false, liveAll, liveAll},
	{NewGeneration, false, append(slices.Clone(liveAll), store.Deleted, store.Vanished), settled},
	{Retain, false, settled, []store.State{store.Retained}},
	{Claim, false, []store.State{store.Active, store.Retained, store.Failed, store.CleanupPending, store.Deleting}, []store.State{store.CleanupPending, store.Deleting}},
	{Unclaim, false, []store.State{store.CleanupPending}, []store.State{store.Active, store.Retained, store.Failed}},
	{Settle, false, []store.State{store.CleanupPending, store.Deleting}, settled},
	{StartDelete, false, []store.State{store.Active, store.Retained, store.Failed, store.CleanupPending, store.Deleting}, []store.State{store.Deleting}},
	{Arm, false, []store.State{store.Deleting}, []store.State{store.Deleting}},
	{Disarm, false, []store.State{store.Deleting}, []store.State{store.Deleting}},
	{Accept, false, []store.State{store.Deleting}, []store.State{store.Deleting}},
	{Confirm, false, []store.State{store.Deleting}, []store.State{store.Deleted, store.Active, store.Retained}},
	{Release, false, []store.State{store.Deleting}, []store.State{store.CleanupPending, store.Deleting}},
	{Refuse, false, []store.State{store.Deleting}, []store.State{store.Refused}},
	{Fail, false, []store.State{store.Deleting, store.CleanupPending, store.Active, store.Retained}, []store.State{store.Failed}},
	{Hold, false, []store.State{store.Active, store.Retained, store.CleanupPending, store.Deleting, store.Failed, store.Refused}, []store.State{store.Held}},
	{Unhold, false, []store.State{store.Held}, []store.State{store.Active, store.Retained, store.Failed, store.Refused}},
	{Vanish, false, unclosed, []store.State{store.Vanished, store.Deleted, store.Active, store.Retained}},
	{JobDeleted, true, unclosed, []store.State{store.Deleted, store.Active, store.Retained}},
	{Contest, false, liveAll, liveAll},
	{Measure, false, kept, kept},
}

// ErrIllegal is returned when a function would make a transition the table
// does not allow: a bug, never a user error.
var ErrIllegal = errors.New("illegal snapshot transition")

// edge returns the table row of tr.
func edge(tr Transition) Edge {
	for _, e := range Table {
		if e.Transition == tr {
			return e
		}
	}
	return Edge{Transition: tr}
}

// move checks cur → next against the table and stamps the change.
func move(tr Transition, cur, next *store.Snapshot, now time.Time) (*store.Snapshot, error) {
	e := edge(tr)
	var from store.State
	if cur != nil {
		from = cur.State
	}
	okFrom := (cur == nil && e.Create) || (cur != nil && slices.Contains(e.From, from))
	if !okFrom || !slices.Contains(e.To, next.State) {
		return nil, fmt.Errorf("%w: %s from %q to %q", ErrIllegal, tr, from, next.State)
	}
	next.UpdatedAt = now
	next.LastTransition = string(tr)
	return next, nil
}

func clone(s *store.Snapshot) *store.Snapshot {
	c := *s
	c.Replaced = nil
	return &c
}

// armed reports whether a DELETE of the record may have been sent: from
// then on nothing pretends the snapshot is still there (rule 7).
func armed(s *store.Snapshot) bool {
	return s.State == store.Deleting && (!s.DeleteSentAt.IsZero() || s.Operation != "")
}

// Armed reports whether a DELETE of the record may have been sent or
// accepted, so that hold, release and rollback must refuse it.
func Armed(s *store.Snapshot) bool { return s != nil && armed(s) }

// Report is what a snapshot.created event says about a snapshot.
type Report struct {
	SessionID, TaskID string
	// CreatedAt is the event time.
	CreatedAt  time.Time
	SourceDisk string
	Retention  string
	// ComputeID is Compute's numeric id from the event, if the job sent it.
	ComputeID string
}

// Registered says what Register did.
type Registered struct {
	// Note is a short account for the log line.
	Note string
	// New is set when a record (or generation) was created.
	New bool
}

// RegisterReport applies a snapshot.created report to the current record of
// its name. A new name is registered; a report of an adopted record takes
// it over; a report that proves the name was reused (another Compute id, or
// a newer report of a name whose record is closed or belongs to another
// task) starts a new generation and archives the old one; a repeat of the
// same report changes nothing.
func (p Policy) RegisterReport(cur *store.Snapshot, t *store.Task, r Report, now time.Time) (*store.Snapshot, Registered, error) {
	fresh := func(gen int) *store.Snapshot {
		n := &store.Snapshot{SessionID: r.SessionID, TaskID: r.TaskID, CreatedAt: r.CreatedAt, RegisteredAt: now,
			SourceDisk: r.SourceDisk, Retention: r.Retention, ComputeID: r.ComputeID, Generation: gen}
		n.State, n.ExpiresAt = p.Settled(n, t)
		if n.State == store.Retained {
			n.RetainUntil = n.ExpiresAt
		}
		return n
	}
	if cur == nil {
		next, err := move(Register, nil, fresh(1), now)
		return next, Registered{Note: "registered", New: true}, err
	}
	sameID := r.ComputeID != "" && cur.ComputeID == r.ComputeID
	otherID := r.ComputeID != "" && cur.ComputeID != "" && cur.ComputeID != r.ComputeID
	sameTask := cur.SessionID == r.SessionID && cur.TaskID == r.TaskID
	switch {
	case otherID && (!cur.State.Live() || r.CreatedAt.After(cur.CreatedAt.Add(p.skew()))):
		// Another snapshot, clearly newer than a live record's (or the
		// record is closed): the record's snapshot is gone.
		return p.newGeneration(cur, fresh, "another Compute id", now)
	case otherID:
		// Another snapshot, not clearly newer: possibly a late report of
		// an earlier snapshot of the name. The live record stays; the
		// report is kept as its contender (the ids keep the two apart).
		return p.contest(cur, r, now)
	case cur.Orphan && armed(cur) && !sameID:
		// The adopted snapshot's DELETE may have run: this report may be
		// of a new snapshot of the name. It waits as the contender and
		// takes the name over when the delete is confirmed.
		return p.contest(cur, r, now)
	case cur.Orphan && cur.State.Live() && (sameID || cur.SessionID == r.SessionID):
		// The same Compute id is the same snapshot, whatever its label
		// says now (rule 2 then refuses a label that does not match the
		// report). Without ids, the adopted record's session is its
		// snapshot's label: a report of another session is not about it.
		return p.takeOver(cur, t, r, now)
	case sameID:
		return nil, Registered{Note: "duplicate report"}, nil
	case !cur.State.Live():
		// A record made by snapshot.deleted alone is filled in by the
		// report of the snapshot it deleted — not by a report of a
		// snapshot created after that deletion (the name reused).
		jobDeletedThis := cur.CreatedAt.IsZero() && cur.DeletedBy == "job" && !r.CreatedAt.After(cur.DeletedAt)
		if sameTask && (cur.CreatedAt.Equal(r.CreatedAt) || jobDeletedThis) {
			if cur.CreatedAt.IsZero() {
				// snapshot.deleted arrived first: fill the record in.
				next := clone(cur)
				next.CreatedAt, next.SourceDisk, next.Retention = r.CreatedAt, r.SourceDisk, r.Retention
				if next.ComputeID == "" {
					next.ComputeID = r.ComputeID
				}
				next.UpdatedAt = now
				return next, Registered{Note: "report of a snapshot the job deleted"}, nil
			}
			return nil, Registered{Note: "duplicate report of a closed record"}, nil
		}
		if r.CreatedAt.Before(cur.CreatedAt.Add(-p.skew())) {
			// Clearly older than the closed record's snapshot, even with
			// the clocks as far apart as MaxClockSkew allows.
			return nil, Registered{Note: "late report of an older generation"}, nil
		}
		// Newer, or older by less than the clock skew: nothing says this
		// is a late report of the closed record's snapshot rather than a
		// snapshot created after it under the name (a skewed clock stamps
		// a later snapshot earlier). When in doubt the report is kept, as
		// a new generation with its task's rules; dropping it would leave
		// the snapshot to adoption, which knows no task.
		return p.newGeneration(cur, fresh, "name reused after "+string(cur.State), now)
	case sameTask && r.CreatedAt.After(cur.CreatedAt):
		// The task reports the name again, later: it deleted the first
		// snapshot and took another one under the same name. (A re-sent
		// report of the same snapshot with a later time costs only a
		// closed record: the new generation tracks the same snapshot.)
		return p.newGeneration(cur, fresh, "a newer report of the name by the same task", now)
	case sameTask:
		if cur.ComputeID == "" && r.ComputeID != "" && !armed(cur) {
			next := clone(cur)
			next.ComputeID = r.ComputeID
			next.UpdatedAt = now
			return next, Registered{Note: "duplicate report; Compute id recorded"}, nil
		}
		return nil, Registered{Note: "duplicate report"}, nil
	case r.CreatedAt.After(cur.CreatedAt) && cur.ComputeID == "":
		// Names are unique in a project while the snapshot exists: a newer
		// report of the name by another task means the first one is gone.
		// (When the record knows its Compute id and the report does not,
		// nothing says which of the two holds the name: a contest.)
		return p.newGeneration(cur, fresh, fmt.Sprintf("name reused by session %s task %s", r.SessionID, r.TaskID), now)
	default:
		// Another task's report of a live name, not newer and without ids
		// to tell the two apart: one of them is stale, and which one only
		// Compute knows. Keep the report with the record: the name is not
		// deleted while contested, and the report takes the name over when
		// the record closes.
		return p.contest(cur, r, now)
	}
}

// contest keeps r as the contender of the live record cur.
func (p Policy) contest(cur *store.Snapshot, r Report, now time.Time) (*store.Snapshot, Registered, error) {
	if cur.Contender != nil && !r.CreatedAt.After(cur.Contender.CreatedAt) {
		return nil, Registered{Note: "contested name; an as new or newer contender is kept already"}, nil
	}
	next := clone(cur)
	next.Contender = &store.Contender{SessionID: r.SessionID, TaskID: r.TaskID, CreatedAt: r.CreatedAt, ReceivedAt: now,
		SourceDisk: r.SourceDisk, Retention: r.Retention, ComputeID: r.ComputeID}
	out, err := move(Contest, cur, next, now)
	return out, Registered{Note: fmt.Sprintf("contested: registered to session %s task %s by a newer report; kept as the contender", cur.SessionID, cur.TaskID)}, err
}

// promoteContender returns closed (the record as it closes) or, when the
// record had a contender, the contender's report as the name's next
// generation, with closed archived.
func (p Policy) promoteContender(cur, closed *store.Snapshot) *store.Snapshot {
	c := cur.Contender
	if c == nil {
		return closed
	}
	old := clone(closed)
	old.Archived, old.Contender = true, nil
	if old.Generation == 0 {
		old.Generation = 1
	}
	n := &store.Snapshot{SessionID: c.SessionID, TaskID: c.TaskID, CreatedAt: c.CreatedAt, RegisteredAt: c.ReceivedAt,
		SourceDisk: c.SourceDisk, Retention: c.Retention, ComputeID: c.ComputeID, Generation: old.Generation + 1}
	// Its own task is not at hand here: it starts active, and the task's
	// rules apply at every claim and last check (the next task event, or
	// the sweep's expiry, settles it).
	n.State, n.ExpiresAt = p.Settled(n, nil)
	n.Replaced = old
	return n
}

// newGeneration archives cur (closing it if it was live) and starts a new
// record of the name.
func (p Policy) newGeneration(cur *store.Snapshot, fresh func(int) *store.Snapshot, why string, now time.Time) (*store.Snapshot, Registered, error) {
	old := clone(cur)
	if old.State.Live() {
		closed, err := p.Vanished(cur, "superseded: "+why, now)
		if err != nil {
			return nil, Registered{}, err
		}
		old = closed
	}
	old.Archived = true
	if old.Generation == 0 {
		old.Generation = 1
	}
	next := fresh(old.Generation + 1)
	next.Replaced = old
	// The table check runs against the current record's state.
	next, err := move(NewGeneration, cur, next, now)
	return next, Registered{Note: fmt.Sprintf("new generation %d (%s)", next.Generation, why), New: true}, err
}

// takeOver gives an adopted record the task, retention and creation time of
// its late report. Unless a DELETE may have gone out, the record is settled
// again under its task's rules (a pending cleanup of the orphan is void).
func (p Policy) takeOver(cur *store.Snapshot, t *store.Task, r Report, now time.Time) (*store.Snapshot, Registered, error) {
	next := clone(cur)
	next.Orphan = false
	if r.ComputeID != "" && r.ComputeID == cur.ComputeID {
		// The report names this very snapshot: a contender without an id
		// was about another one (one snapshot has one report).
		next.Contender = nil
	}
	next.SessionID, next.TaskID = r.SessionID, r.TaskID
	next.CreatedAt, next.Retention = r.CreatedAt, r.Retention
	if r.SourceDisk != "" {
		next.SourceDisk = r.SourceDisk
	}
	if next.ComputeID == "" {
		next.ComputeID = r.ComputeID
	}
	next.ExpiresAt = time.Time{}
	switch next.State {
	case store.Active, store.Retained, store.CleanupPending:
		p.settleInto(next, t)
	case store.Deleting:
		if !armed(cur) {
			p.settleInto(next, t)
		}
	}
	out, err := move(TakeOver, cur, next, now)
	return out, Registered{Note: "took over the adopted record"}, err
}

// settleInto sets next to the state and expiry its task calls for, and
// clears any claim.
func (p Policy) settleInto(next *store.Snapshot, t *store.Task) {
	next.State, next.ExpiresAt = p.Settled(next, t)
	if next.State == store.Retained && next.ExpiresAt.After(next.RetainUntil) {
		next.RetainUntil = next.ExpiresAt
	}
	next.PrevState, next.LeaseUntil, next.LeaseOwner, next.DeleteSentAt = "", time.Time{}, "", time.Time{}
	next.CleanupReason, next.CleanupRequestedAt = "", time.Time{}
}

// Found is what Compute says about a labelled snapshot the sweep found.
type Found struct {
	SessionID    string
	ComputeID    string
	CreationTime time.Time
	SourceDisk   string
	// Size is the snapshot's storage as the listing reported it.
	Size *store.Size
}

// Adoption says whether the sweep adopts a labelled, unreported snapshot
// (rule 8), and why (not): only for a session the registry knows, and only
// once it is older than the grace period, so that a late snapshot.created
// can arrive first. Snapshots of unknown sessions are only reported.
type Adoption struct {
	Adopt bool
	// Unknown is set for a session the registry never knew; InGrace for
	// one too young (or of unknown age) to adopt yet.
	Unknown, InGrace bool
	Why              string
}

// AdoptionFor decides about one unreported labelled snapshot.
func (p Policy) AdoptionFor(session string, known bool, created, now time.Time) Adoption {
	p = p.WithDefaults()
	switch {
	case !known || !events.ValidSessionID(session):
		return Adoption{Unknown: true, Why: fmt.Sprintf("session %q is unknown to this registry: reported, never adopted or deleted", session)}
	case created.IsZero():
		return Adoption{InGrace: true, Why: "creation time unknown: not adopted"}
	case now.Sub(created) < p.OrphanGrace:
		return Adoption{InGrace: true, Why: "in the grace period until " + created.Add(p.OrphanGrace).UTC().Format(time.RFC3339) + " (its report may still arrive)"}
	}
	return Adoption{Adopt: true, Why: fmt.Sprintf("adopted by the next sweep; expires %s after adoption", p.OrphanTTL)}
}

// Adopt registers a labelled, unreported snapshot of a known session. It
// expires no sooner than OrphanTTL after the adoption. A closed record of
// the name (another, older snapshot) is archived as a generation.
func (p Policy) Adopt(cur *store.Snapshot, f Found, now time.Time) (*store.Snapshot, error) {
	p = p.WithDefaults()
	n := &store.Snapshot{SessionID: f.SessionID, State: store.Active, Orphan: true, SourceDisk: f.SourceDisk,
		CreatedAt: f.CreationTime, RegisteredAt: now, AdoptedAt: now, ExpiresAt: now.Add(p.OrphanTTL),
		ComputeID: f.ComputeID, ComputeCreatedAt: f.CreationTime, Generation: 1, Size: f.Size}
	if cur == nil {
		return move(Adopt, nil, n, now)
	}
	if cur.State.Live() || (f.ComputeID != "" && cur.ComputeID == f.ComputeID) {
		return nil, nil
	}
	if cur.ComputeID == "" {
		// A closed record whose Compute id is unknown may have been this
		// very snapshot: adopting it would drop its task and the task's
		// rules. Only a snapshot created after that record's report arrived
		// is surely another one; any other is reported, not adopted.
		// A snapshot labelled with another session than that record's is
		// another one too.
		if _, other := p.OtherSnapshot(cur, Observed{CreationTime: f.CreationTime}); !other && cur.SessionID == f.SessionID {
			return nil, nil
		}
	}
	if !cur.DeletedAt.IsZero() && now.Sub(cur.DeletedAt) < p.OrphanGrace {
		// The name's record was closed only just now: give a report of
		// the snapshot that holds the name now the same grace.
		return nil, nil
	}
	old := clone(cur)
	old.Archived = true
	if old.Generation == 0 {
		old.Generation = 1
	}
	n.Generation = old.Generation + 1
	n.Replaced = old
	return move(NewGeneration, cur, n, now)
}

// RetainFor settles an active or retained record after its task failed (or
// failed again): retained, with the longest retention it was ever given.
func (p Policy) RetainFor(cur *store.Snapshot, t *store.Task, now time.Time) (*store.Snapshot, error) {
	if cur == nil || (cur.State != store.Active && cur.State != store.Retained) {
		return nil, nil
	}
	st, exp := p.Settled(cur, t)
	if st != store.Retained || (cur.State == st && exp.Equal(cur.ExpiresAt)) {
		return nil, nil
	}
	next := clone(cur)
	next.State, next.ExpiresAt = st, exp
	if exp.After(next.RetainUntil) {
		next.RetainUntil = exp
	}
	return move(Retain, cur, next, now)
}

// Claimed says what ClaimFor decided.
type Claimed struct {
	// Publish is set when a cleanup message must be sent; Fresh when this
	// claim moved the record (so a failed publish rolls it back).
	Publish, Fresh bool
	// Reason is the reason the message carries.
	Reason events.CleanupReason
	// Skipped says why nothing is published.
	Skipped string
}

// ClaimFor moves an eligible record to cleanup_pending so that a cleanup
// message can be published. A record already pending gets its message
// again (a redelivered event, or the sweep re-driving it: redrive counts
// those, and after MaxRedrives without progress the record is failed for
// an operator). Failed records are claimed only by a manual cleanup.
func (p Policy) ClaimFor(cur *store.Snapshot, t *store.Task, reason events.CleanupReason, redrive bool, now time.Time) (*store.Snapshot, Claimed, error) {
	p = p.WithDefaults()
	if cur == nil {
		return nil, Claimed{Skipped: "not registered"}, nil
	}
	if cur.State == store.CleanupPending {
		d := p.Eligible(cur, t, now)
		if !d.Eligible {
			// A stale request: put it back where the policy says (or, out
			// of the allowlist, fail it so it stops coming back).
			next, err := p.SettleStale(cur, t, d.Why, now)
			return next, Claimed{Skipped: d.Why}, err
		}
		next := clone(cur)
		next.CleanupRequestedAt = now
		if redrive {
			if cur.Redrives >= p.MaxRedrives {
				failed, err := p.GiveUp(cur, fmt.Sprintf("re-driven %d times without progress; last error: %s", cur.Redrives, orNone(cur.Error)), "stuck", now)
				return failed, Claimed{Skipped: "re-driven too often"}, err
			}
			next.Redrives++
		}
		r := events.CleanupReason(cur.CleanupReason)
		if !r.Valid() {
			r = reason
		}
		out, err := move(Claim, cur, next, now)
		return out, Claimed{Publish: true, Reason: r}, err
	}
	switch cur.State {
	case store.Active, store.Retained:
	case store.Failed:
		if reason != events.ReasonManual {
			return nil, Claimed{Skipped: "state failed"}, nil
		}
	case store.Held:
		return nil, Claimed{Skipped: fmt.Sprintf("held by %s: %s", cur.HeldBy, cur.HoldReason)}, nil
	default:
		return nil, Claimed{Skipped: "state " + string(cur.State)}, nil
	}
	if !p.Allowed(cur.Project) && cur.State != store.Failed {
		next, err := p.GiveUp(cur, fmt.Sprintf("project %q is not in SNAPSWEEP_PROJECTS", cur.Project), "not_allowed", now)
		return next, Claimed{Skipped: "project not allowed"}, err
	}
	if d := p.Eligible(cur, t, now); !d.Eligible {
		return nil, Claimed{Skipped: d.Why}, nil
	}
	next := clone(cur)
	next.PrevState = cur.State
	next.State = store.CleanupPending
	next.CleanupReason = string(reason)
	next.CleanupRequestedAt = now
	if reason == events.ReasonManual {
		next.Redrives = 0
	}
	out, err := move(Claim, cur, next, now)
	return out, Claimed{Publish: true, Fresh: true, Reason: reason}, err
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// UnclaimFor rolls a claim made at claimedAt back after its message could
// not be published, and only that claim: if anything changed the record
// since, it is left alone.
func (p Policy) UnclaimFor(cur *store.Snapshot, claimedAt time.Time, now time.Time) (*store.Snapshot, error) {
	if cur == nil || cur.State != store.CleanupPending || !cur.CleanupRequestedAt.Equal(claimedAt) {
		return nil, nil
	}
	next := clone(cur)
	next.State = cur.PrevState
	if next.State != store.Retained && next.State != store.Failed {
		next.State = store.Active
	}
	next.PrevState, next.CleanupReason, next.CleanupRequestedAt = "", "", time.Time{}
	return move(Unclaim, cur, next, now)
}

// SettleStale puts a pending or (unarmed) deleting record back where its
// task's rules say, because they no longer allow the delete (why). A record
// outside the allowlist is failed instead, so that it stops coming back.
func (p Policy) SettleStale(cur *store.Snapshot, t *store.Task, why string, now time.Time) (*store.Snapshot, error) {
	if cur == nil || armed(cur) {
		return nil, nil
	}
	return p.settleStale(cur, t, why, now)
}

// settleStale is SettleStale for a caller that knows no DELETE is in
// effect (it saw the snapshot READY since any that went out).
func (p Policy) settleStale(cur *store.Snapshot, t *store.Task, why string, now time.Time) (*store.Snapshot, error) {
	if cur == nil || (cur.State != store.CleanupPending && cur.State != store.Deleting) {
		return nil, nil
	}
	if !p.Allowed(cur.Project) {
		return p.giveUp(cur, why, "not_allowed", now)
	}
	next := clone(cur)
	p.settleInto(next, t)
	next.Operation = ""
	next.Error = why
	return move(Settle, cur, next, now)
}

// RedriveDeleting counts a re-drive of a deleting record whose lease ran
// out while its snapshot still exists; after MaxRedrives without progress a
// record whose DELETE never went out is failed for an operator. It reports
// whether a cleanup message should be published.
func (p Policy) RedriveDeleting(cur *store.Snapshot, now time.Time) (*store.Snapshot, bool, error) {
	p = p.WithDefaults()
	if cur == nil || cur.State != store.Deleting || cur.LeaseUntil.After(now) {
		return nil, false, nil
	}
	if cur.Redrives >= p.MaxRedrives && !armed(cur) {
		next, err := p.giveUp(cur, fmt.Sprintf("re-driven %d times without progress; last error: %s", cur.Redrives, orNone(cur.Error)), "stuck", now)
		return next, false, err
	}
	next := clone(cur)
	next.Redrives++
	out, err := move(Claim, cur, next, now)
	return out, true, err
}
