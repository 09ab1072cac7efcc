package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/bus"
	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/ingest"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/service/servicetest"
	"github.com/snapsweep/snapsweep/store"
)

// The emulator variant of the property test needs Firestore; the other
// tests run on store.Memory.
func TestMain(m *testing.M) { emulators.Main(m, emulators.Firestore) }

const project = "proj-a"

// t0 is the clock of the tests: events are stamped before it.
var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// fixture is a Processor on a registry with its cleanup messages published
// through the real Pub/Sub client to pstest.
type fixture struct {
	reg   store.Registry
	proc  *ingest.Processor
	ps    *pstest.Server
	topic string
}

// newFixture builds a processor on reg (store.Memory when nil) for the
// projects allowed; publishing to a topic that does not exist when
// noTopic is set (every publish fails).
func newFixture(t *testing.T, reg store.Registry, projects []string, noTopic bool) *fixture {
	t.Helper()
	if reg == nil {
		reg = store.NewMemory()
	}
	f := &fixture{reg: reg, topic: "projects/" + project + "/topics/snapshot-cleanup"}
	var topics []string
	if !noTopic {
		topics = append(topics, "snapshot-cleanup")
	}
	var client *pubsub.Client
	f.ps, client = servicetest.PubSub(t, project, topics...)
	pub := bus.NewPublisher(client, f.topic, bus.Options{Timeout: 2 * time.Second})
	t.Cleanup(pub.Stop)
	now := func() time.Time { return t0 }
	policy := lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist(projects)}
	sched := &cleanup.Scheduler{Store: reg, Publisher: pub, Policy: policy, Now: now}
	judge := &cleanup.Judge{Store: reg, Tolerance: 0.1, Now: now}
	f.proc = &ingest.Processor{Store: reg, Scheduler: sched, Policy: policy, Judge: judge, Now: now}
	return f
}

// ev is a validated event, as the handler passes it (through events.Decode).
func ev(t *testing.T, id string, typ events.Type, session, task string, at time.Time, snap string) events.Event {
	t.Helper()
	e := events.Event{ID: id, Type: typ, Time: at, SessionID: session, TaskID: task}
	if snap != "" {
		e.Snapshot = &events.SnapshotRef{Project: project, Name: snap}
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	out, err := events.Decode(b)
	if err != nil {
		t.Fatalf("event %s: %v", id, err)
	}
	return out
}

func (f *fixture) apply(t *testing.T, e events.Event) ingest.Outcome {
	t.Helper()
	out, err := f.proc.Apply(context.Background(), e)
	if err != nil {
		t.Fatalf("apply %s %s: %v", e.Type, e.ID, err)
	}
	return out
}

func (f *fixture) state(t *testing.T, name string) store.State {
	t.Helper()
	rec, err := f.reg.GetSnapshot(context.Background(), store.Key{Project: project, Name: name})
	if err != nil {
		t.Fatalf("snapshot %s: %v", name, err)
	}
	return rec.State
}

// cleaned is the names the published cleanup messages ask to delete.
func (f *fixture) cleaned(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, m := range f.ps.Messages() {
		msg, err := events.DecodeCleanup(m.Data)
		if err != nil {
			t.Fatalf("bad cleanup message %q: %v", m.Data, err)
		}
		names = append(names, msg.Name)
	}
	sort.Strings(names)
	return names
}

// TestTaskOutcomesDecideTheSnapshots: a succeeded task's snapshots are
// claimed and get a cleanup message each; a failed task's are retained and
// get none; a running task's stay active.
func TestTaskOutcomesDecideTheSnapshots(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, []string{project}, false)
	at := t0.Add(-time.Hour)
	f.apply(t, ev(t, "e0", events.SessionStarted, "s1", "", at, ""))
	for i, task := range []string{"ok", "bad", "busy"} {
		f.apply(t, ev(t, "start-"+task, events.TaskStarted, "s1", task, at.Add(time.Duration(i)*time.Second), ""))
		f.apply(t, ev(t, "snap-"+task, events.SnapshotCreated, "s1", task, at.Add(time.Minute), "snap-"+task))
	}
	if out := f.apply(t, ev(t, "done-ok", events.TaskCompleted, "s1", "ok", at.Add(2*time.Minute), "")); out.Scheduled != 1 {
		t.Errorf("task.completed scheduled %d cleanups, want 1", out.Scheduled)
	}
	f.apply(t, ev(t, "fail-bad", events.TaskFailed, "s1", "bad", at.Add(2*time.Minute), ""))

	got := map[string]store.State{}
	for _, n := range []string{"snap-ok", "snap-bad", "snap-busy"} {
		got[n] = f.state(t, n)
	}
	want := map[string]store.State{"snap-ok": store.CleanupPending, "snap-bad": store.Retained, "snap-busy": store.Active}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot states (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"snap-ok"}, f.cleaned(t)); diff != "" {
		t.Errorf("cleanup messages (-want +got):\n%s", diff)
	}
	task, err := f.reg.GetTask(context.Background(), store.TaskKey{SessionID: "s1", TaskID: "bad"})
	if err != nil || task.State != store.TaskFailed {
		t.Errorf("failed task: %+v, %v; want state failed", task, err)
	}
}

// TestSnapshotReportedAfterItsTaskSucceeded: events out of order — the
// snapshot arrives after its task's success and is scheduled at once.
func TestSnapshotReportedAfterItsTaskSucceeded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, []string{project}, false)
	at := t0.Add(-time.Hour)
	f.apply(t, ev(t, "done", events.TaskCompleted, "s1", "t1", at.Add(time.Minute), ""))
	if out := f.apply(t, ev(t, "late", events.SnapshotCreated, "s1", "t1", at, "late-snap")); out.Scheduled != 1 {
		t.Errorf("late snapshot.created scheduled %d cleanups, want 1", out.Scheduled)
	}
	if got := f.state(t, "late-snap"); got != store.CleanupPending {
		t.Errorf("state %s, want cleanup_pending", got)
	}
}

// TestFailureOutranksSuccessAtTheSameTime: a failure and a success stamped
// at the same time leave the task failed, in either order. A failure seen
// first keeps the snapshot retained: neither the success at the same time
// nor a later retry's success releases it. (A success seen first has
// claimed the snapshot already; the engine re-reads the task before it
// deletes, cleanup's tests cover that.)
func TestFailureOutranksSuccessAtTheSameTime(t *testing.T) {
	t.Parallel()
	at := t0.Add(-time.Hour)
	for _, order := range [][]events.Type{{events.TaskFailed, events.TaskCompleted}, {events.TaskCompleted, events.TaskFailed}} {
		t.Run(string(order[0])+"-first", func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, []string{project}, false)
			f.apply(t, ev(t, "snap", events.SnapshotCreated, "s1", "t1", at, "snap-1"))
			for _, typ := range order {
				f.apply(t, ev(t, string(typ), typ, "s1", "t1", at.Add(time.Minute), ""))
			}
			task, err := f.reg.GetTask(context.Background(), store.TaskKey{SessionID: "s1", TaskID: "t1"})
			if err != nil || task.State != store.TaskFailed {
				t.Fatalf("task %+v, %v; want failed", task, err)
			}
			if order[0] != events.TaskFailed {
				return
			}
			f.apply(t, ev(t, "retry-ok", events.TaskCompleted, "s1", "t1", at.Add(40*time.Minute), ""))
			if got := f.state(t, "snap-1"); got != store.Retained {
				t.Errorf("after a retry's success: state %s, want retained (a retry never shortens the retention)", got)
			}
			if names := f.cleaned(t); len(names) != 0 {
				t.Errorf("cleanup messages %v, want none", names)
			}
		})
	}
}

// TestRejectedEventsChangeNothing: an event outside the allowlist, stamped
// too far in the future, or reusing an id with other content is a
// *events.RejectError (the handler acknowledges and records it) and leaves
// the registry untouched.
func TestRejectedEventsChangeNothing(t *testing.T) {
	t.Parallel()
	at := t0.Add(-time.Hour)
	tests := []struct {
		name   string
		first  *events.Event
		ev     func(t *testing.T) events.Event
		reason events.Reason
	}{
		{"project not allowed", nil, func(t *testing.T) events.Event {
			e := ev(t, "p1", events.SnapshotCreated, "s1", "t1", at, "x")
			e.Snapshot.Project = "someone-else"
			return e
		}, events.ReasonProjectNotAllowed},
		{"future time", nil, func(t *testing.T) events.Event {
			return ev(t, "f1", events.SnapshotCreated, "s1", "t1", t0.Add(time.Hour), "x")
		}, events.ReasonFutureTime},
		{"id reused with other content", ptr(ev(t, "dup", events.TaskStarted, "s1", "t1", at, "")), func(t *testing.T) events.Event {
			return ev(t, "dup", events.SnapshotCreated, "s1", "t1", at, "x")
		}, events.ReasonConflictingDuplicate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, nil, []string{project}, false)
			if tc.first != nil {
				f.apply(t, *tc.first)
			}
			_, err := f.proc.Apply(context.Background(), tc.ev(t))
			rej, ok := events.AsReject(err)
			if !ok || rej.Reason != tc.reason {
				t.Fatalf("Apply = %v; want a rejection %s", err, tc.reason)
			}
			if _, err := f.reg.GetSnapshot(context.Background(), store.Key{Project: project, Name: "x"}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rejected event registered a snapshot (err %v)", err)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// TestDuplicateIsANoOp: a redelivered event is reported as a duplicate and
// publishes nothing again.
func TestDuplicateIsANoOp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, []string{project}, false)
	at := t0.Add(-time.Hour)
	f.apply(t, ev(t, "snap", events.SnapshotCreated, "s1", "t1", at, "snap-1"))
	done := ev(t, "done", events.TaskCompleted, "s1", "t1", at.Add(time.Minute), "")
	f.apply(t, done)
	out := f.apply(t, done)
	if !out.Duplicate || out.Scheduled != 0 {
		t.Errorf("redelivery: %+v; want a duplicate that schedules nothing", out)
	}
	if diff := cmp.Diff([]string{"snap-1"}, f.cleaned(t)); diff != "" {
		t.Errorf("cleanup messages (-want +got):\n%s", diff)
	}
}

// TestJobDeletedItsSnapshot: snapshot.deleted from the job closes the
// record; nothing is published.
func TestJobDeletedItsSnapshot(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, []string{project}, false)
	at := t0.Add(-time.Hour)
	f.apply(t, ev(t, "snap", events.SnapshotCreated, "s1", "t1", at, "snap-1"))
	f.apply(t, ev(t, "gone", events.SnapshotDeleted, "s1", "t1", at.Add(time.Minute), "snap-1"))
	if got := f.state(t, "snap-1"); got != store.Deleted {
		t.Errorf("state %s, want deleted", got)
	}
	if names := f.cleaned(t); len(names) != 0 {
		t.Errorf("cleanup messages %v, want none", names)
	}
}

// TestSessionCompletedSchedulesAndJudges: session.completed re-drives the
// cleanup of the succeeded tasks and records the session as completed with
// a pending outcome while deletions are under way; a session without
// deletions due is judged cleaned.
func TestSessionCompletedSchedulesAndJudges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	at := t0.Add(-time.Hour)

	f := newFixture(t, nil, []string{project}, false)
	f.apply(t, ev(t, "snap", events.SnapshotCreated, "s1", "t1", at, "snap-1"))
	f.apply(t, ev(t, "done", events.TaskCompleted, "s1", "t1", at.Add(time.Minute), ""))
	out := f.apply(t, ev(t, "end", events.SessionCompleted, "s1", "", at.Add(2*time.Minute), ""))
	if out.Scheduled != 1 {
		t.Errorf("session.completed scheduled %d, want 1 (the succeeded task's snapshot again)", out.Scheduled)
	}
	s, err := f.reg.GetSession(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if s.State != store.SessionCompleted || s.Outcome != store.OutcomePending || !s.CompletedAt.Equal(at.Add(2*time.Minute)) {
		t.Errorf("session %+v; want completed at %s with outcome pending", s, at.Add(2*time.Minute))
	}

	empty := newFixture(t, nil, []string{project}, false)
	empty.apply(t, ev(t, "start", events.SessionStarted, "s2", "", at, ""))
	empty.apply(t, ev(t, "end", events.SessionCompleted, "s2", "", at.Add(time.Minute), ""))
	s, err = empty.reg.GetSession(ctx, "s2")
	if err != nil || s.Outcome != store.OutcomeCleaned {
		t.Errorf("session without snapshots: %+v, %v; want outcome cleaned", s, err)
	}
}

// TestSessionStartMovesBack: session.started older than the recorded start
// moves it back; other older events do not.
func TestSessionStartMovesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, []string{project}, false)
	at := t0.Add(-time.Hour)
	f.apply(t, ev(t, "task", events.TaskStarted, "s1", "t1", at, ""))
	f.apply(t, ev(t, "older-task", events.TaskStarted, "s1", "t2", at.Add(-time.Minute), ""))
	if s, err := f.reg.GetSession(ctx, "s1"); err != nil || !s.StartedAt.Equal(at) {
		t.Errorf("after an older task event: %+v, %v; want the start unchanged at %s", s, err, at)
	}
	f.apply(t, ev(t, "start", events.SessionStarted, "s1", "", at.Add(-time.Hour), ""))
	if s, err := f.reg.GetSession(ctx, "s1"); err != nil || !s.StartedAt.Equal(at.Add(-time.Hour)) {
		t.Errorf("after session.started: %+v, %v; want the start at %s", s, err, at.Add(-time.Hour))
	}
}

// TestPublishFailureIsRedelivered: when the cleanup message cannot be
// published the event is not marked processed (an error: the handler
// answers 5xx), the claim is rolled back, and the redelivery publishes.
func TestPublishFailureIsRedelivered(t *testing.T) {
	t.Parallel()
	reg := store.NewMemory()
	broken := newFixture(t, reg, []string{project}, true)
	at := t0.Add(-time.Hour)
	broken.apply(t, ev(t, "snap", events.SnapshotCreated, "s1", "t1", at, "snap-1"))
	done := ev(t, "done", events.TaskCompleted, "s1", "t1", at.Add(time.Minute), "")
	if _, err := broken.proc.Apply(context.Background(), done); err == nil {
		t.Fatal("Apply succeeded although the cleanup message could not be published")
	}
	if got := broken.state(t, "snap-1"); got != store.Active {
		t.Errorf("after the failed publish: state %s, want active (claim rolled back)", got)
	}
	working := newFixture(t, reg, []string{project}, false)
	if out := working.apply(t, done); out.Duplicate || out.Scheduled != 1 {
		t.Errorf("redelivery: %+v; want applied, 1 scheduled", out)
	}
	if got := working.state(t, "snap-1"); got != store.CleanupPending {
		t.Errorf("after the redelivery: state %s, want cleanup_pending", got)
	}
}
