// Package lifecycle is the one home of a snapshot record's life: the
// retention and ownership rules of the contract (Policy) and every
// transition of a record (register, adopt, claim, delete, hold, vanish, ...)
// as a pure function checked against one declared table (Table).
//
// Nothing else in snapsweep sets a record's State or the fields that go with
// it: ingest, the scheduler, the deletion engine, the sweep and the operator
// CLI call these functions inside a registry transaction
// (store.UpdateSnapshot), which may run them more than once, so they only
// compute the next record from the current one and the time passed in.
package lifecycle

import (
	"fmt"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

// Policy holds the rules. It is pure: every decision is a function of the
// records and the time passed in.
type Policy struct {
	// TTL is the age after which an unfinished task's snapshot is expired.
	TTL time.Duration
	// FailedRetention is how long a failed task's snapshots are kept.
	FailedRetention time.Duration
	// MaxClockSkew bounds how far in the future an event may be stamped
	// (default 10m). It also widens "taken before the failure": a snapshot
	// stamped up to this much after a failure may belong to the failed
	// attempt, so it is kept like one.
	MaxClockSkew time.Duration
	// OrphanGrace is how old an unreported labelled snapshot must be before
	// the sweep adopts it (default 1h); OrphanTTL is how long an adopted
	// one lives after its adoption (default TTL, never less).
	OrphanGrace, OrphanTTL time.Duration
	// MaxRedrives is how often the sweep re-drives a record without
	// progress before it is failed for an operator (default 5).
	MaxRedrives int
	// Projects is the allowlist (rule 1). Nil allows nothing.
	Projects events.Allowlist
}

// WithDefaults returns p with the documented defaults filled in.
func (p Policy) WithDefaults() Policy {
	if p.MaxClockSkew <= 0 {
		p.MaxClockSkew = 10 * time.Minute
	}
	if p.OrphanGrace <= 0 {
		p.OrphanGrace = time.Hour
	}
	p.OrphanTTL = max(p.OrphanTTL, p.TTL)
	if p.MaxRedrives <= 0 {
		p.MaxRedrives = 5
	}
	return p
}

// Allowed applies rule 1: only snapshots of allowlisted projects are touched.
func (p Policy) Allowed(project string) bool { return p.Projects[project] }

// retention returns the per-snapshot TTL override, if any.
func retention(s *store.Snapshot) (time.Duration, bool) {
	if s == nil || s.Retention == "" {
		return 0, false
	}
	d, err := time.ParseDuration(s.Retention)
	if err != nil || d <= 0 {
		return 0, false
	}
	return d, true
}

// since is when a snapshot's age counts from: the later of its event time
// and the time snapsweep first saw it, so that no bogus or old time makes a
// snapshot expire on arrival.
func since(s *store.Snapshot) time.Time {
	if s.RegisteredAt.After(s.CreatedAt) {
		return s.RegisteredAt
	}
	return s.CreatedAt
}

// ActiveExpiry is when a snapshot of a running or unknown task expires. An
// adopted orphan keeps the expiry its adoption gave it.
func (p Policy) ActiveExpiry(s *store.Snapshot) time.Time {
	if s.Orphan && !s.ExpiresAt.IsZero() {
		return s.ExpiresAt
	}
	ttl := p.TTL
	if d, ok := retention(s); ok {
		ttl = d
	}
	return since(s).Add(ttl)
}

// failedAt is the time of the task's latest failure (zero if none).
func failedAt(t *store.Task) time.Time {
	if t == nil {
		return time.Time{}
	}
	if t.FailedAt.IsZero() && t.State == store.TaskFailed {
		return t.StateTime // a record written before FailedAt existed
	}
	return t.FailedAt
}

// RetainedUntil is when the failed-task retention of s ends, or zero when
// no failure protects it. A failure protects the snapshots taken before it
// (up to MaxClockSkew after it), whatever happened to the task later: a
// retry never shortens their retention, not even a retry that succeeds —
// they are the failed attempt's rollback path, and keeping them costs
// cents. The retention counts from the later of the failure's time and
// when snapsweep saw it; a per-snapshot retention longer than the
// failed-task retention extends it. It never shrinks: the record keeps the
// longest retention it was ever given.
func (p Policy) RetainedUntil(s *store.Snapshot, t *store.Task) time.Time {
	until := s.RetainUntil
	if f := failedAt(t); !f.IsZero() && !s.CreatedAt.After(f.Add(p.skew())) {
		from := f
		if t.FailureSeenAt.After(from) {
			from = t.FailureSeenAt
		}
		keep := p.FailedRetention
		if d, ok := retention(s); ok && d > keep {
			keep = d
		}
		if u := from.Add(keep); u.After(until) {
			until = u
		}
	}
	return until
}

func (p Policy) skew() time.Duration {
	if p.MaxClockSkew <= 0 {
		return 10 * time.Minute
	}
	return p.MaxClockSkew
}

// Settled returns the state and expiry a live, unclaimed snapshot should
// have given its task: retained while a failure protects it (or protected
// it), else active. A succeeded task's snapshot is active here; scheduling
// claims it.
func (p Policy) Settled(s *store.Snapshot, t *store.Task) (store.State, time.Time) {
	exp := p.ActiveExpiry(s)
	if until := p.RetainedUntil(s, t); !until.IsZero() {
		if exp.After(until) {
			until = exp
		}
		return store.Retained, until
	}
	return store.Active, exp
}

// Decision is the outcome of an eligibility check.
type Decision struct {
	Eligible bool
	// Why says in a few words why (not): it goes into logs and reports.
	Why string
}

// Eligible applies rules 1 and 3 of the contract: a snapshot outside the
// allowlist never; a held one never; a failed task's only after the
// failed-task retention; a running task's only once expired; a succeeded
// task's at once. Orphans (no task) follow their expiry. Terminal and
// refused records are never eligible.
func (p Policy) Eligible(s *store.Snapshot, t *store.Task, now time.Time) Decision {
	if !p.Allowed(s.Project) {
		return Decision{Why: fmt.Sprintf("project %q is not in SNAPSWEEP_PROJECTS", s.Project)}
	}
	switch {
	case s.Archived:
		return Decision{Why: "an older generation of the name"}
	case s.State == store.Held:
		return Decision{Why: "held by " + s.HeldBy}
	case !s.State.Live():
		return Decision{Why: "already " + string(s.State)}
	case s.State == store.Refused:
		return Decision{Why: "refused: ownership check failed"}
	case s.Contender != nil && (s.Contender.ComputeID == "" || s.ComputeID == ""):
		// With both Compute ids known the two reports are told apart (the
		// last check deletes only the record's own id): no block.
		return Decision{Why: fmt.Sprintf("contested: session %s task %s also reported this name; kept until one of the two records closes",
			s.Contender.SessionID, s.Contender.TaskID)}
	}
	retained := p.RetainedUntil(s, t)
	if now.Before(retained) {
		return Decision{Why: "task failed; retained until " + retained.UTC().Format(time.RFC3339)}
	}
	if t != nil && t.State == store.TaskSucceeded {
		return Decision{Eligible: true, Why: "task succeeded"}
	}
	// Unless its task succeeded, a snapshot lives at least the TTL from
	// when snapsweep first saw it, also after a failed-task retention that
	// ended before its (late) report arrived or while a retry runs.
	until := p.ActiveExpiry(s)
	if now.Before(until) {
		what := "task running"
		switch {
		case s.Orphan:
			what = "adopted orphan"
		case t == nil:
			what = "task unknown"
		case !retained.IsZero():
			what = "failed-task retention over"
		}
		return Decision{Why: fmt.Sprintf("%s; expires at %s", what, until.UTC().Format(time.RFC3339))}
	}
	if !retained.IsZero() {
		return Decision{Eligible: true, Why: "failed-task retention ended"}
	}
	return Decision{Eligible: true, Why: "expired"}
}
