package main

// Regression tests of issue 13 ("Deletion safety under adversarial order,
// identity and races"): one test per class and sub-case, black-box through
// the service's public inputs (see safety_harness_test.go). Each asserts
// what the contract says must happen, so each fails on commit 07f0017 and
// passes once the core is fixed. The primary oracle is the Compute fake's
// call log: no DELETE ever reaches a snapshot that must be kept.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

const retentionFmt = time.RFC3339

// adopted reports whether a record makes snapsweep the snapshot's owner: a
// state on the way to deletion (a record kept only to report a snapshot,
// in a state of its own, is not).
func adopted(r *store.Snapshot) bool {
	if r == nil {
		return false
	}
	switch string(r.State) {
	case "active", "retained", "cleanup_pending", "deleting", "deleted", "failed":
		return true
	}
	return false
}

// Class 1a: a sweep between a snapshot's creation and its late
// snapshot.created must not adopt it within the grace period; after the
// grace it may, but the late report takes the record over (task, retention),
// the task's failure retains it, and the orphan TTL never deletes it before
// the failed-task retention (here extended by the snapshot's own retention).
func TestSafety1aLateReportAfterAdoption(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{})
	t0 := e.clock.Now()
	const session, task, name = "s1a", "vm-1", "late-1"
	e.must(atkEv("1a-session", "session.started", session, "", t0, nil), atkEv("1a-start", "task.started", session, task, t0, nil))
	e.fake.AddSnapshot(atkProject, name, atkOwn(session)) // taken at t0, reported late

	e.clock.Advance(5 * time.Minute)
	e.sweepAndFlush()
	if r := e.rec(atkProject, name); adopted(r) {
		t.Errorf("a sweep 5m after the snapshot was taken adopted it, within SNAPSWEEP_ORPHAN_GRACE=1h: state %s, orphan=%v, expires %s",
			r.State, r.Orphan, r.ExpiresAt.Format(retentionFmt))
	}

	e.clock.Advance(2 * time.Hour) // past the grace: adoption is allowed now
	e.sweepAndFlush()
	snap := atkSnap(atkProject, name)
	snap["retention"] = "240h"
	e.must(atkEv("1a-created", "snapshot.created", session, task, t0, snap))
	failedAt := e.clock.Now()
	e.must(atkEv("1a-failed", "task.failed", session, task, failedAt, nil))

	type view struct{ TaskID, Retention, State string }
	want := view{TaskID: task, Retention: "240h", State: "retained"}
	got := view{}
	if r := e.rec(atkProject, name); r != nil {
		got = view{r.TaskID, r.Retention, string(r.State)}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the late snapshot.created did not take the adopted record over (-want +got):\n%s", diff)
	}

	// Past the orphan TTL (72h after adoption) and past the failed-task
	// retention (168h), but within the snapshot's own 240h: it must stay.
	e.clock.Advance(200 * time.Hour)
	for range 3 {
		e.sweepAndFlush()
		e.clock.Advance(time.Hour)
	}
	e.mustKeep(atkProject, name, "rollback snapshot of task vm-1 that failed 203h ago, retention 240h")
}

// Class 1b: a labelled snapshot of a session the registry has never known
// (another deployment, another tool using the same label key) is reported,
// never adopted, never deleted, however many sweeps and however much time.
func TestSafety1bUnknownSessionNeverAdoptedOrDeleted(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{})
	t0 := e.clock.Now()
	e.reported(atkProject, "s1b", "vm-1", "known-1", t0) // the registry knows session s1b
	e.fake.AddSnapshot(atkProject, "foreign-1", atkOwn("other-deployment"))

	var last string
	for _, d := range []time.Duration{time.Minute, 2 * time.Hour, 80 * time.Hour, 200 * time.Hour, 800 * time.Hour} {
		e.clock.Advance(d)
		last = e.sweepAndFlush()
	}
	e.mustKeep(atkProject, "foreign-1", "labelled with session other-deployment, which this registry never knew")
	if r := e.rec(atkProject, "foreign-1"); adopted(r) {
		t.Errorf("a snapshot of an unknown session was adopted: state %s, orphan=%v, session %s", r.State, r.Orphan, r.SessionID)
	}
	if st := e.status(); !strings.Contains(last, "foreign-1") && !strings.Contains(st, "foreign-1") {
		t.Errorf("the unknown-session snapshot foreign-1 is not reported by the last sweep nor by /status:\nsweep: %.200s…\nstatus: %.200s…", last, st)
	}
}

// Class 2a: a name reused in Compute after a deletion is a new snapshot: its
// snapshot.created starts a new record generation, its task's success
// deletes it (no leak), and the old generation stays listable.
func TestSafety2aReusedNameIsANewGeneration(t *testing.T) {
	t.Parallel()
	atkBackends(t, func(t *testing.T, fs bool) {
		e := newAtkEnv(t, atkOptions{firestore: fs})
		const session, name = "s2a", "reused-1"
		t0 := e.clock.Now()
		e.reported(atkProject, session, "vm-1", name, t0)
		e.must(atkEv("2a-done-1", "task.completed", session, "vm-1", t0.Add(time.Second), nil))
		e.flush()
		if n := e.fake.SuccessfulDeletes(atkProject, name); n != 1 {
			t.Fatalf("setup: the first snapshot %s was not deleted after its task succeeded (%d deletes)", name, n)
		}

		e.clock.Advance(time.Hour)
		t1 := e.clock.Now()
		e.fake.AddSnapshot(atkProject, name, atkOwn(session)) // same name, a new Compute snapshot (new id)
		e.must(
			atkEv("2a-start-2", "task.started", session, "vm-2", t1, nil),
			atkEv("2a-created-2", "snapshot.created", session, "vm-2", t1, atkSnap(atkProject, name)),
			atkEv("2a-done-2", "task.completed", session, "vm-2", t1.Add(time.Second), nil),
		)
		e.flush()
		e.clock.Advance(11 * time.Minute)
		e.sweepAndFlush()
		if e.fake.Exists(atkProject, name) {
			t.Errorf("leak: the second snapshot named %s (task vm-2 succeeded) was never deleted; Compute deletes of the name %d, registry %+v",
				name, e.fake.SuccessfulDeletes(atkProject, name), e.rec(atkProject, name))
		}
		var gens []string
		for _, r := range e.sessionRecords(session) {
			if r.Name == name {
				gens = append(gens, r.TaskID)
			}
		}
		slices.Sort(gens)
		if diff := cmp.Diff([]string{"vm-1", "vm-2"}, gens); diff != "" {
			t.Errorf("record generations of %s listed for session %s, by task (-want +got):\n%s", name, session, diff)
		}
	})
}

// Class 2b: a delete Compute accepted but snapsweep could not confirm
// leaves the record deleting; the name is then reused by a running task of
// the same session (same label). No sweep may delete the new snapshot.
func TestSafety2bUnconfirmedDeleteNeverDeletesReusedName(t *testing.T) {
	t.Parallel()
	atkBackends(t, func(t *testing.T, fs bool) {
		e := newAtkEnv(t, atkOptions{latency: time.Hour, firestore: fs})
		const session, name = "s2b", "reuse-2b"
		t0 := e.clock.Now()
		e.reported(atkProject, session, "vm-1", name, t0)
		e.must(atkEv("2b-done-1", "task.completed", session, "vm-1", t0.Add(time.Second), nil))
		// Compute accepts the delete, but its operations can never be read
		// (for the whole test, so that no delivery waits on one for real).
		e.gate.add(&atkRule{kind: "op", times: -1, status: 404, reason: "notFound"})
		e.flush()
		if st := e.state(atkProject, name); st != "deleting" {
			t.Fatalf("setup: after an accepted but unconfirmed delete the record is %q, want deleting", st)
		}

		e.clock.Advance(2 * time.Hour) // the first delete finishes in Compute
		if e.fake.Exists(atkProject, name) {
			t.Fatal("setup: the first snapshot still exists after its delete operation's latency")
		}
		e.fake.AddSnapshot(atkProject, name, atkOwn(session)) // the job reuses the name
		mark := len(e.fake.Calls())
		t1 := e.clock.Now()
		e.must(
			atkEv("2b-start-2", "task.started", session, "vm-2", t1, nil),
			atkEv("2b-created-2", "snapshot.created", session, "vm-2", t1, atkSnap(atkProject, name)),
		)
		for range 4 {
			e.clock.Advance(11 * time.Minute) // past SNAPSWEEP_SWEEP_STUCK_AFTER
			e.sweepAndFlush()
			if e.deletesSince(mark, atkProject, name) > 0 {
				break // proven; further re-drives would only wait on the running delete
			}
		}
		if n := e.deletesSince(mark, atkProject, name); n != 0 || !e.fake.Exists(atkProject, name) {
			t.Errorf("the new snapshot %s of running task vm-2 (not expired) got %d delete calls after the name was reused; exists=%v; registry %+v",
				name, n, e.fake.Exists(atkProject, name), e.rec(atkProject, name))
		}
	})
}

// Class 3: eligibility must be checked again right before the DELETE: a
// task.failed landing after the claim (during the ownership read, the rate
// limiter, a quota pause, a backoff) stops the delete.
func TestSafety3FailureDuringClaimedDelete(t *testing.T) {
	t.Parallel()
	// behindWall starts the clock just before a whole minute, a little
	// behind the wall clock, so the engine really waits (a quota refill of
	// 0.5s, a backoff) instead of giving up at once.
	behindWall := time.Now().UTC().Truncate(time.Minute).Add(-500 * time.Millisecond)
	tests := []struct {
		name     string
		start    time.Time
		settings map[string]string
		decoy    bool // delete another snapshot first, so the rate limiter makes the next one wait
		// rule is what Compute does with the snapshot's first call of a kind.
		rule func() *atkRule
	}{
		{name: "ownership-read", rule: func() *atkRule { return &atkRule{kind: "get", times: 1, hold: make(chan struct{})} }},
		{name: "rate-limiter", settings: map[string]string{"SNAPSWEEP_DELETE_RATE": "0.5"}, decoy: true,
			rule: func() *atkRule { return &atkRule{kind: "get", times: 1} }},
		{name: "quota-pause", start: behindWall, rule: func() *atkRule {
			return &atkRule{kind: "delete", times: 1, hold: make(chan struct{}), status: 403, reason: "rateLimitExceeded"}
		}},
		{name: "backoff", start: behindWall, rule: func() *atkRule {
			return &atkRule{kind: "delete", times: 1, hold: make(chan struct{}), status: 503, reason: "backendError"}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newAtkEnv(t, atkOptions{start: tc.start, settings: tc.settings})
			const session = "s3"
			name := "claimed-" + tc.name
			t0 := e.clock.Now()
			if tc.decoy {
				e.reported(atkProject, session, "vm-decoy", "decoy-1", t0)
				e.must(atkEv("3-decoy-done", "task.completed", session, "vm-decoy", t0.Add(time.Second), nil))
				e.flush()
			}
			e.reported(atkProject, session, "vm-1", name, t0)
			e.must(atkEv("3-done", "task.completed", session, "vm-1", t0.Add(time.Second), nil))
			msgs := e.take(name)
			if len(msgs) != 1 {
				t.Fatalf("setup: %d cleanup messages for %s, want 1", len(msgs), name)
			}
			rule := tc.rule()
			rule.name = name
			r := e.gate.add(rule)
			done := make(chan string, 1)
			go func() {
				code, body := e.deliver(msgs[0])
				done <- fmt.Sprintf("%d %s", code, body)
			}()
			atkWait(t, r.entered, "the engine to reach Compute")
			// The task failed after all: its snapshots are the way back.
			e.must(atkEv("3-failed", "task.failed", session, "vm-1", t0.Add(2*time.Second), nil))
			if r.hold != nil {
				close(r.hold)
			}
			select {
			case res := <-done:
				t.Logf("cleanup delivery answered %.300s", res)
				// A 503 is redelivered by Pub/Sub (here: by hand). After a
				// DELETE that may have gone out (the 503 of the backoff
				// case), the engine asks for one, to read the snapshot again.
				for i := 0; i < 3 && strings.HasPrefix(res, "503"); i++ {
					code, body := e.deliver(msgs[0])
					res = fmt.Sprintf("%d %s", code, body)
					t.Logf("redelivery answered %.300s", res)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("cleanup delivery did not finish")
			}
			e.flush() // redeliveries
			e.mustKeep(atkProject, name, "task vm-1 failed while its cleanup was under way")
			if st := e.state(atkProject, name); st != "retained" {
				t.Errorf("state of %s is %q, want retained (its task failed)", name, st)
			}
		})
	}
}

// Class 3 (hold): an operator hold that lands while a claimed delete is
// still under way (here: the first delivery stalls in its ownership read
// while a redelivery takes the expired claim over, fails and gives it back)
// stops that delete.
func TestSafety3HoldDuringClaimedDelete(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{})
	const session, name = "s3h", "held-3"
	t0 := e.clock.Now()
	e.reported(atkProject, session, "vm-1", name, t0)
	e.must(atkEv("3h-done", "task.completed", session, "vm-1", t0.Add(time.Second), nil))
	msgs := e.take(name)
	if len(msgs) != 1 {
		t.Fatalf("setup: %d cleanup messages, want 1", len(msgs))
	}
	stall := e.gate.add(&atkRule{kind: "get", name: name, times: 1, hold: make(chan struct{})})
	first := make(chan string, 1)
	go func() {
		code, body := e.deliver(msgs[0])
		first <- fmt.Sprintf("%d %s", code, body)
	}()
	atkWait(t, stall.entered, "the first delivery's ownership read")

	// The claim's lease runs out; the sweep re-drives it, and the
	// redelivery's DELETE fails with a transient error.
	e.clock.Advance(11 * time.Minute)
	e.gate.add(&atkRule{kind: "delete", name: name, times: 1, status: 503, reason: "backendError"})
	e.sweepAndFlush()

	code, out := e.cli("hold", atkProject+"/"+name, "--reason", "INC-3: keep for forensics")
	t.Logf("hold: exit %d: %s", code, strings.TrimSpace(out))
	close(stall.hold)
	select {
	case res := <-first:
		t.Logf("first delivery answered %.300s", res)
	case <-time.After(60 * time.Second):
		t.Fatal("first delivery did not finish")
	}
	e.flush()
	if code != 0 {
		// The hold was refused: it never landed, so nothing to check.
		return
	}
	e.mustKeep(atkProject, name, "held by an operator (the hold was accepted) while a stale claim was under way")
	if st := e.state(atkProject, name); st != "held" {
		t.Errorf("state of %s is %q after an accepted hold, want held", name, st)
	}
}

// Class 4: once Compute accepted a DELETE, nothing pretends the snapshot is
// still there: a failed operation wait leaves the record deleting, a hold is
// refused, and the sweep confirms the deletion.
func TestSafety4AcceptedDeleteIsNotRolledBack(t *testing.T) {
	t.Parallel()
	atkBackends(t, func(t *testing.T, fs bool) {
		e := newAtkEnv(t, atkOptions{firestore: fs})
		const session, name = "s4", "accepted-1"
		t0 := e.clock.Now()
		e.reported(atkProject, session, "vm-1", name, t0)
		e.must(atkEv("4-done", "task.completed", session, "vm-1", t0.Add(time.Second), nil))
		e.gate.add(&atkRule{kind: "op", times: 1, status: 503, reason: "backendError"})
		e.flush()
		if n := e.fake.SuccessfulDeletes(atkProject, name); n != 1 {
			t.Fatalf("setup: Compute did not delete %s (%d)", name, n)
		}
		if st := e.state(atkProject, name); st != "deleting" && st != "deleted" {
			t.Errorf("after Compute accepted the DELETE and the operation read failed, the record is %q, want deleting (or deleted once confirmed)", st)
		}
		if code, out := e.cli("hold", atkProject+"/"+name, "--reason", "INC-4"); code == 0 {
			t.Errorf("hold of a snapshot whose DELETE Compute accepted succeeded, want it refused: %s", strings.TrimSpace(out))
		}
		for range 3 {
			e.clock.Advance(11 * time.Minute)
			e.sweepAndFlush()
		}
		if st := e.state(atkProject, name); st != "deleted" {
			t.Errorf("after 3 sweeps the record of the snapshot Compute deleted is %q, want deleted", st)
		}
	})
}

// Class 4 (vanished): held, retained and active records whose snapshot is
// gone from Compute are closed by the sweep (state vanished), not kept
// forever.
func TestSafety4VanishedSnapshotsAreClosed(t *testing.T) {
	t.Parallel()
	atkBackends(t, func(t *testing.T, fs bool) {
		e := newAtkEnv(t, atkOptions{firestore: fs})
		const session = "s4v"
		t0 := e.clock.Now()
		e.reported(atkProject, session, "vm-run", "gone-active", t0)
		e.reported(atkProject, session, "vm-fail", "gone-retained", t0)
		e.must(atkEv("4v-failed", "task.failed", session, "vm-fail", t0.Add(time.Second), nil))
		e.reported(atkProject, session, "vm-held", "gone-held", t0)
		if code, out := e.cli("hold", atkProject+"/gone-held", "--reason", "INC-4v"); code != 0 {
			t.Fatalf("setup: hold: %s", out)
		}
		names := []string{"gone-active", "gone-retained", "gone-held"}
		for _, n := range names {
			e.externalDelete(atkProject, n) // someone deletes them behind snapsweep's back
		}
		for range 3 {
			e.clock.Advance(time.Hour)
			e.sweepAndFlush()
		}
		want, got := map[string]string{}, map[string]string{}
		for _, n := range names {
			want[n] = "vanished"
			got[n] = e.state(atkProject, n)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("records of snapshots gone from Compute after 3 sweeps (-want +got):\n%s", diff)
		}
	})
}

// Class 5 (tie): at equal timestamps a failure outranks a success,
// whichever arrives first.
func TestSafety5TieFailureWinsOverSuccess(t *testing.T) {
	t.Parallel()
	for _, order := range [][]string{{"task.failed", "task.completed"}, {"task.completed", "task.failed"}} {
		t.Run(strings.Join(order, "-then-"), func(t *testing.T) {
			t.Parallel()
			e := newAtkEnv(t, atkOptions{})
			const session, name = "s5t", "tie-1"
			t0 := e.clock.Now()
			e.reported(atkProject, session, "vm-1", name, t0)
			for _, typ := range order {
				e.must(atkEv("5t-"+typ, typ, session, "vm-1", t0.Add(time.Second), nil))
			}
			e.flush()
			e.clock.Advance(11 * time.Minute)
			e.sweepAndFlush()
			e.mustKeep(atkProject, name, "its task failed and succeeded at the same instant: the failure wins")
			if st := e.taskState(session, "vm-1"); st != "failed" {
				t.Errorf("task state %q, want failed", st)
			}
		})
	}
}

// Class 5 (future start): a task.started stamped a few minutes in the future
// (within the skew) must not hide the task.failed that arrives after it;
// the snapshot is kept for the failed-task retention, whatever expiry,
// the threshold or a manual cleanup say.
func TestSafety5FutureStartDoesNotHideLaterFailure(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{settings: map[string]string{"SNAPSWEEP_MAX_LIVE_SNAPSHOTS": "1"}})
	const session, name = "s5f", "skewed-1"
	now := e.clock.Now()
	e.fake.AddSnapshot(atkProject, name, atkOwn(session))
	e.must(
		atkEv("5f-created", "snapshot.created", session, "vm-1", now.Add(-time.Minute), atkSnap(atkProject, name)),
		atkEv("5f-started", "task.started", session, "vm-1", now.Add(5*time.Minute), nil), // a skewed clock
		atkEv("5f-failed", "task.failed", session, "vm-1", now.Add(time.Minute), nil),
	)
	e.reported(atkProject, session, "vm-2", "other-1", now) // pressure over the threshold

	e.clock.Advance(100 * time.Hour) // past the 72h TTL, within the 168h failed retention
	e.sweepAndFlush()
	if code, out := e.cli("cleanup", "task", "--session", session, "--task", "vm-1", "--yes"); code != 0 {
		t.Logf("manual cleanup: exit %d: %s", code, out)
	}
	e.flush()
	e.mustKeep(atkProject, name, "task vm-1 failed 100h ago (failed retention 168h); a skewed task.started must not hide it")
}

// Class 5 (retry): a retry (task.started after task.failed) never shortens
// the failed retention of the snapshots taken before it: neither the
// threshold sweep nor `snapsweep cleanup task` deletes them early.
func TestSafety5RetryKeepsFailedRetention(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{settings: map[string]string{"SNAPSWEEP_MAX_LIVE_SNAPSHOTS": "1"}})
	const session = "s5r"
	t0 := e.clock.Now()
	e.reported(atkProject, session, "vm-1", "before-retry", t0)
	e.must(
		atkEv("5r-failed", "task.failed", session, "vm-1", t0.Add(time.Minute), nil),
		atkEv("5r-retry", "task.started", session, "vm-1", t0.Add(2*time.Minute), nil),
	)
	e.fake.AddSnapshot(atkProject, "after-retry", atkOwn(session))
	e.must(atkEv("5r-created-2", "snapshot.created", session, "vm-1", t0.Add(3*time.Minute), atkSnap(atkProject, "after-retry")))

	e.clock.Advance(100 * time.Hour) // past the TTL, within the failed retention
	e.sweepAndFlush()
	if code, out := e.cli("cleanup", "task", "--session", session, "--task", "vm-1", "--yes"); code != 0 {
		t.Logf("manual cleanup: exit %d: %s", code, out)
	}
	e.flush()
	e.mustKeep(atkProject, "before-retry", "taken before the failed attempt, 100h after the failure (retention 168h)")
}

// Class 5 (old time): a snapshot.created stamped 1970 does not expire on
// arrival: its expiry counts from when snapsweep first saw it.
func TestSafety5AncientSnapshotCreatedDoesNotExpireOnArrival(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{})
	const session, name = "s5a", "ancient-1"
	now := e.clock.Now()
	e.fake.AddSnapshot(atkProject, name, atkOwn(session))
	e.must(
		atkEv("5a-start", "task.started", session, "vm-1", now, nil),
		atkEv("5a-created", "snapshot.created", session, "vm-1", time.Date(1970, 1, 1, 0, 0, 1, 0, time.UTC), atkSnap(atkProject, name)),
	)
	if r := e.rec(atkProject, name); r == nil || r.ExpiresAt.Before(now.Add(72*time.Hour)) {
		t.Errorf("record of a snapshot first seen at %s: %+v; want it to expire no sooner than 72h after that", now.Format(retentionFmt), r)
	}
	e.clock.Advance(time.Hour)
	e.sweepAndFlush()
	e.mustKeep(atkProject, name, "of a running task, first seen 1h ago (TTL 72h)")
}

// Class 5 (far future): an event stamped more than SNAPSWEEP_MAX_CLOCK_SKEW
// in the future is rejected (future_time: acknowledged, recorded, counted),
// so it cannot pin the task's state and hide its failure.
func TestSafety5FarFutureEventRejected(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{})
	const session, name = "s5x", "pinned-1"
	now := e.clock.Now()
	msgID, code, body := e.send(atkEv("5x-started", "task.started", session, "vm-1", now.Add(48*time.Hour), nil))
	if code/100 != 2 {
		t.Errorf("event stamped 48h in the future: status %d, want 2xx (acknowledged): %s", code, body)
	}
	if got := e.rejected()[msgID]; got != "future_time" {
		t.Errorf("event stamped 48h in the future recorded with reason %q, want future_time", got)
	}
	if n := e.rejectedCount("future_time"); n < 1 {
		t.Errorf("snapsweep.messages.rejected{reason=future_time} = %d, want 1", n)
	}
	e.fake.AddSnapshot(atkProject, name, atkOwn(session))
	e.must(
		atkEv("5x-created", "snapshot.created", session, "vm-1", now, atkSnap(atkProject, name)),
		atkEv("5x-failed", "task.failed", session, "vm-1", now.Add(time.Minute), nil),
	)
	if st := e.taskState(session, "vm-1"); st != "failed" {
		t.Errorf("task state after its task.failed: %q, want failed (not pinned by the future task.started)", st)
	}
	e.clock.Advance(100 * time.Hour)
	e.sweepAndFlush()
	e.mustKeep(atkProject, name, "task vm-1 failed 100h ago (failed retention 168h)")
}

// Class 6: stuck re-drives that can never finish (a project removed from
// the allowlist, a snapshot in use for days) must not starve expiry: with a
// cap of 5, the expired snapshots are deleted within a few sweeps, and a
// record re-driven 5 times without progress goes to failed.
func TestSafety6StuckRedrivesDoNotStarveExpiry(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{settings: map[string]string{
		"SNAPSWEEP_PROJECTS": atkProject + "," + atkOther, "SNAPSWEEP_MAX_DELETES_PER_SWEEP": "5",
	}})
	t0 := e.clock.Now()
	var other, inUse, expired []string
	for i := range 5 {
		n := fmt.Sprintf("elsewhere-%d", i)
		other = append(other, n)
		e.reported(atkOther, "s6", "vm-other", n, t0)
	}
	e.must(atkEv("6-other-done", "task.completed", "s6", "vm-other", t0.Add(time.Second), nil))
	var otherMsgs []atkMsg
	for _, n := range other {
		otherMsgs = append(otherMsgs, e.take(n)...)
	}
	for i := range 3 {
		n := fmt.Sprintf("in-use-%d", i)
		inUse = append(inUse, n)
		e.reported(atkProject, "s6", "vm-image", n, t0)
		e.fake.InUse(atkProject, n, 1_000_000) // an image was made from it
	}
	e.must(atkEv("6-image-done", "task.completed", "s6", "vm-image", t0.Add(time.Second), nil))
	for i := range 5 {
		n := fmt.Sprintf("expiring-%d", i)
		expired = append(expired, n)
		e.reported(atkProject, "s6", "vm-running", n, t0)
	}
	e.flush() // the in-use deletes fail and go back to the queue

	e.start(map[string]string{"SNAPSWEEP_PROJECTS": atkProject}) // the other project is removed
	for _, m := range otherMsgs {
		e.deliver(m) // redelivered after the deploy: refused at the edge
	}

	e.clock.Advance(73 * time.Hour) // the running task's snapshots expired
	allGoneAt := 0
	for i := 1; i <= 10; i++ {
		e.sweepAndFlush()
		gone := 0
		for _, n := range expired {
			if !e.fake.Exists(atkProject, n) {
				gone++
			}
		}
		if gone == len(expired) && allGoneAt == 0 {
			allGoneAt = i
		}
		if i == 5 && allGoneAt == 0 {
			t.Errorf("expiry starved: after 5 sweeps (cap 5 each) only %d of %d expired snapshots were deleted", gone, len(expired))
		}
		e.clock.Advance(11 * time.Minute)
	}
	t.Logf("expired snapshots all deleted by sweep %d (0 = never)", allGoneAt)
	want, got := map[string]string{}, map[string]string{}
	for _, n := range inUse {
		want[n], got[n] = "failed", e.state(atkProject, n)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records re-driven 10 times without progress (-want +got):\n%s", diff)
	}
	for _, n := range other {
		if c := e.fake.DeleteCalls(atkOther, n); c != 0 {
			t.Errorf("%s/%s (project removed from the allowlist) got %d delete calls", atkOther, n, c)
		}
	}
}

// Class 7 (engine): the engine enforces the allowlist itself: a cleanup
// message for a project outside SNAPSWEEP_PROJECTS handed to it directly
// (below the HTTP edge) is refused without any Compute call.
func TestSafety7EngineRefusesProjectOutsideAllowlist(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{settings: map[string]string{"SNAPSWEEP_PROJECTS": atkProject + "," + atkOther}})
	const session, name = "s7", "outside-1"
	t0 := e.clock.Now()
	e.reported(atkOther, session, "vm-1", name, t0)
	e.must(atkEv("7-done", "task.completed", session, "vm-1", t0.Add(time.Second), nil))
	msgs := e.take(name)
	if len(msgs) != 1 {
		t.Fatalf("setup: %d cleanup messages, want 1", len(msgs))
	}
	m, err := events.DecodeCleanup(msgs[0].data)
	if err != nil {
		t.Fatal(err)
	}
	e.start(map[string]string{"SNAPSWEEP_PROJECTS": atkProject})
	mark := len(e.fake.Calls())
	out, err := e.svc.Engine.Handle(context.Background(), m)
	t.Logf("engine: %+v, %v", out, err)
	if calls := e.calls(mark); len(calls) != 0 {
		t.Errorf("the engine called Compute for project %s, outside SNAPSWEEP_PROJECTS=%s: %v", atkOther, atkProject, calls)
	}
	if string(out.Result) == "deleted" {
		t.Errorf("the engine deleted %s/%s outside the allowlist", atkOther, name)
	}
	e.mustKeep(atkOther, name, "its project is outside SNAPSWEEP_PROJECTS")
}

// Class 7 (sweep): records of a project removed from the allowlist are
// never touched in Compute by any sweep (and never deleted).
func TestSafety7SweepNeverTouchesProjectRemovedFromAllowlist(t *testing.T) {
	t.Parallel()
	e := newAtkEnv(t, atkOptions{latency: 1000 * time.Hour, settings: map[string]string{"SNAPSWEEP_PROJECTS": atkProject + "," + atkOther}})
	const session = "s7s"
	t0 := e.clock.Now()
	// outside-deleting: a delete was issued, not confirmed (record deleting).
	e.reported(atkOther, session, "vm-1", "outside-deleting", t0)
	e.must(atkEv("7s-done-1", "task.completed", session, "vm-1", t0.Add(time.Second), nil))
	e.gate.add(&atkRule{kind: "op", times: -1, status: 404, reason: "notFound"})
	e.flush()
	e.gate.clearRules()
	// outside-pending: a cleanup requested (message lost); outside-expiring:
	// a running task's snapshot that will expire.
	e.reported(atkOther, session, "vm-2", "outside-pending", t0)
	e.must(atkEv("7s-done-2", "task.completed", session, "vm-2", t0.Add(time.Second), nil))
	e.take("outside-pending")
	e.reported(atkOther, session, "vm-3", "outside-expiring", t0)
	t.Logf("before the deploy: deleting=%q pending=%q expiring=%q", e.state(atkOther, "outside-deleting"),
		e.state(atkOther, "outside-pending"), e.state(atkOther, "outside-expiring"))

	e.start(map[string]string{"SNAPSWEEP_PROJECTS": atkProject})
	mark := len(e.fake.Calls())
	e.clock.Advance(73 * time.Hour)
	for range 3 {
		e.sweepAndFlush()
		e.clock.Advance(11 * time.Minute)
	}
	var touched []string
	for _, c := range e.calls(mark) {
		if strings.Contains(c, " "+atkOther+"/") {
			touched = append(touched, c)
		}
	}
	if len(touched) != 0 {
		t.Errorf("sweeps called Compute for project %s after it was removed from SNAPSWEEP_PROJECTS: %v", atkOther, touched)
	}
	for _, n := range []string{"outside-pending", "outside-expiring"} {
		if c := e.deletesSince(mark, atkOther, n); c != 0 {
			t.Errorf("%s/%s got %d delete calls after its project was removed from the allowlist", atkOther, n, c)
		}
	}
}

// Class 8: an event id is not the whole dedup key: a second event reusing
// an id with other content is rejected as conflicting_duplicate
// (acknowledged, recorded), while identical content redelivered is still a
// plain duplicate.
func TestSafety8ConflictingDuplicateRejected(t *testing.T) {
	t.Parallel()
	atkBackends(t, func(t *testing.T, fs bool) {
		e := newAtkEnv(t, atkOptions{firestore: fs})
		const session, name = "s8", "dup-1"
		now := e.clock.Now()
		e.fake.AddSnapshot(atkProject, name, atkOwn(session))
		first := atkEv("8-ev", "snapshot.created", session, "vm-1", now, atkSnap(atkProject, name))
		e.must(first)
		conflictID, code, body := e.send(atkEv("8-ev", "task.failed", session, "vm-1", now.Add(time.Minute), nil))
		if code/100 != 2 {
			t.Errorf("conflicting duplicate: status %d, want 2xx (acknowledged): %s", code, body)
		}
		redeliveryID, code2, body2 := e.send(first)
		if code2/100 != 2 {
			t.Errorf("identical redelivery: status %d, want 2xx: %s", code2, body2)
		}
		rej := e.rejected()
		if got := rej[conflictID]; got != "conflicting_duplicate" {
			t.Errorf("event reusing id 8-ev with other content recorded with reason %q, want conflicting_duplicate (response %.200s)", got, body)
		}
		if got, ok := rej[redeliveryID]; ok {
			t.Errorf("identical redelivery of event 8-ev recorded as rejected (%q), want a plain duplicate", got)
		}
		if n := e.rejectedCount("conflicting_duplicate"); n != 1 {
			t.Errorf("snapsweep.messages.rejected{reason=conflicting_duplicate} = %d, want 1", n)
		}
	})
}
