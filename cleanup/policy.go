// Package cleanup decides when a registered snapshot may be deleted and
// deletes it: the ownership and retention rules of the contract (Policy),
// the scheduling of cleanup messages (Scheduler), and the deletion engine
// behind POST /pubsub/snapshot-cleanup (Engine), with retries, a circuit
// breaker, a rate limit and a concurrency limit around the Compute API.
package cleanup

import (
	"fmt"
	"time"

	"github.com/snapsweep/snapsweep/store"
)

// Policy holds the retention rules. It is pure: every decision is a
// function of the records and the time passed in.
type Policy struct {
	// TTL is the age after which an unfinished task's snapshot is expired.
	TTL time.Duration
	// FailedRetention is how long a failed task's snapshots are kept.
	FailedRetention time.Duration
}

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

// ActiveExpiry is when an active snapshot created at created expires.
func (p Policy) ActiveExpiry(s *store.Snapshot) time.Time {
	ttl := p.TTL
	if d, ok := retention(s); ok {
		ttl = d
	}
	return s.CreatedAt.Add(ttl)
}

// RetainedExpiry is when a snapshot of a task that failed at failedAt may go.
// A per-snapshot retention longer than the failed-task retention extends it:
// a job that asked to keep a snapshot longer never gets it deleted sooner
// because its task failed.
func (p Policy) RetainedExpiry(s *store.Snapshot, failedAt time.Time) time.Time {
	keep := p.FailedRetention
	if d, ok := retention(s); ok && d > keep {
		keep = d
	}
	return failedAt.Add(keep)
}

// Settle returns the state and expiry a live, unclaimed snapshot should have
// given its task: retained when the task failed, active otherwise. A
// succeeded task's snapshot is active here; scheduling claims it.
func (p Policy) Settle(s *store.Snapshot, t *store.Task) (store.State, time.Time) {
	if t != nil && t.State == store.TaskFailed {
		return store.Retained, p.RetainedExpiry(s, t.StateTime)
	}
	return store.Active, p.ActiveExpiry(s)
}

// Decision is the outcome of an eligibility check.
type Decision struct {
	Eligible bool
	// Why says in a few words why (not) — it goes into logs and reports.
	Why string
}

// Eligible applies rule 3 of the contract: a held snapshot never; a running
// task's snapshot only once expired; a failed task's only after the failed
// retention; a succeeded task's at once. Orphans (no task) follow their
// expiry. Terminal and refused records are never eligible.
func (p Policy) Eligible(s *store.Snapshot, t *store.Task, now time.Time) Decision {
	switch s.State {
	case store.Held:
		return Decision{Why: "held by " + s.HeldBy}
	case store.Deleted:
		return Decision{Why: "already deleted"}
	case store.Refused:
		return Decision{Why: "refused: ownership check failed"}
	}
	switch {
	case t != nil && t.State == store.TaskSucceeded:
		return Decision{Eligible: true, Why: "task succeeded"}
	case t != nil && t.State == store.TaskFailed:
		until := p.RetainedExpiry(s, t.StateTime)
		if now.Before(until) {
			return Decision{Why: fmt.Sprintf("task failed; retained until %s", until.UTC().Format(time.RFC3339))}
		}
		return Decision{Eligible: true, Why: "failed-task retention ended"}
	default:
		until := p.ActiveExpiry(s)
		if s.Orphan && !s.ExpiresAt.IsZero() {
			until = s.ExpiresAt
		}
		if now.Before(until) {
			what := "task running"
			if t == nil {
				what = "task unknown"
			}
			return Decision{Why: fmt.Sprintf("%s; expires at %s", what, until.UTC().Format(time.RFC3339))}
		}
		return Decision{Eligible: true, Why: "expired"}
	}
}
