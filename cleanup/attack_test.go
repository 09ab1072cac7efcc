package cleanup_test

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/store"
)

// The tests in this file attack the deletion rules of the contract (rules
// 1-3): each sets up a snapshot that must survive, hands the engine the
// cleanup message an attacker or a bug would produce, and checks with the
// fake Compute API's call log that no delete call was made, that the
// snapshot still exists, and what the registry says.

// registerTask is register with an explicit task id, so that two snapshots
// of one session can belong to tasks in different states.
func (f *fixture) registerTask(t *testing.T, project, name, session, taskID string, task store.TaskState, st store.State, labels map[string]string) events.CleanupMessage {
	t.Helper()
	ctx := context.Background()
	tk := store.TaskKey{SessionID: session, TaskID: taskID}
	if _, err := f.store.UpdateTask(ctx, tk, func(*store.Task) (*store.Task, error) {
		return &store.Task{State: task, StateTime: t0}, nil
	}); err != nil {
		t.Fatal(err)
	}
	rec := &store.Snapshot{Project: project, Name: name, SessionID: session, TaskID: taskID, State: st,
		CreatedAt: t0, RegisteredAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(72 * time.Hour)}
	if labels != nil {
		// The registry knows the Compute id, as from an event that sent it.
		rec.ComputeID = strconv.FormatUint(f.fake.AddSnapshot(project, name, labels), 10)
	}
	if err := f.store.PutSnapshot(ctx, rec); err != nil {
		t.Fatal(err)
	}
	return events.CleanupMessage{Project: project, Name: name, SessionID: session, TaskID: taskID,
		Reason: events.ReasonTaskCompleted, RequestedAt: t0}
}

// deleteCalls returns every delete call the fake received, whatever it named.
func (f *fixture) deleteCalls() []gcefake.Call {
	var out []gcefake.Call
	for _, c := range f.fake.Calls() {
		if c.Method == "snapshots.delete" {
			out = append(out, c)
		}
	}
	return out
}

// touched returns "method project/name" of every call the fake received.
func (f *fixture) touched() []string {
	var out []string
	for _, c := range f.fake.Calls() {
		out = append(out, c.Method+" "+c.Project+"/"+c.Name)
	}
	return out
}

func (f *fixture) state(t *testing.T, project, name string) store.State {
	t.Helper()
	rec, err := f.store.GetSnapshot(context.Background(), store.Key{Project: project, Name: name})
	if err != nil {
		t.Fatalf("registry record %s/%s: %v", project, name, err)
	}
	return rec.State
}

func TestAttackNothingIsDeleted(t *testing.T) {
	t.Parallel()
	own := func(s string) map[string]string { return map[string]string{label: s} }
	tests := []struct {
		name    string
		now     time.Duration // after t0
		task    store.TaskState
		state   store.State
		labels  map[string]string
		between func(f *fixture) // runs after registration, before the message
		msg     func(m *events.CleanupMessage)

		wantRes   cleanup.Result
		wantState store.State
		// wantReads is whether the engine may read the snapshot (the
		// ownership check); otherwise it must make no Compute call at all.
		wantReads bool
	}{
		{name: "label missing", task: store.TaskSucceeded, state: store.CleanupPending, labels: map[string]string{"team": "storage"},
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantReads: true},
		{name: "no labels at all", task: store.TaskSucceeded, state: store.CleanupPending, labels: map[string]string{},
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantReads: true},
		{name: "label of another session", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s2"),
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantReads: true},
		{name: "label value with the session as prefix", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1-other"),
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantReads: true},
		{name: "session id under another label key", task: store.TaskSucceeded, state: store.CleanupPending, labels: map[string]string{"migration-session-x": "s1"},
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantReads: true},
		{name: "label changed between registration and deletion", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			between: func(f *fixture) { f.fake.SetLabels("proj-a", "snap-1", own("someone-else")) },
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantReads: true},
		{name: "label removed between registration and deletion", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			between: func(f *fixture) { f.fake.SetLabels("proj-a", "snap-1", nil) },
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantReads: true},
		{name: "snapshot replaced by another owner's of the same name", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			between: func(f *fixture) { f.fake.AddSnapshot("proj-a", "snap-1", map[string]string{"owner": "someone-else"}) },
			wantRes: cleanup.ResultAlreadyGone, wantState: store.Vanished, wantReads: true},
		{name: "name reused by another snapshot of the same session (rule 6)", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			between: func(f *fixture) { f.fake.AddSnapshot("proj-a", "snap-1", own("s1")) },
			wantRes: cleanup.ResultAlreadyGone, wantState: store.Vanished, wantReads: true},
		{name: "running task, not expired", task: store.TaskRunning, state: store.CleanupPending, labels: own("s1"), now: 71 * time.Hour,
			wantRes: cleanup.ResultSkipped, wantState: store.Active},
		{name: "running task, message claims the task completed", task: store.TaskRunning, state: store.Active, labels: own("s1"),
			msg:     func(m *events.CleanupMessage) { m.Reason = events.ReasonTaskCompleted; m.TaskID = "another-task" },
			wantRes: cleanup.ResultSkipped, wantState: store.Active},
		{name: "running task, message says expired", task: store.TaskRunning, state: store.Active, labels: own("s1"), now: 71 * time.Hour,
			msg:     func(m *events.CleanupMessage) { m.Reason = events.ReasonExpired },
			wantRes: cleanup.ResultSkipped, wantState: store.Active},
		{name: "failed task inside retention", task: store.TaskFailed, state: store.Retained, labels: own("s1"), now: 167 * time.Hour,
			wantRes: cleanup.ResultSkipped, wantState: store.Retained},
		{name: "failed task inside retention, stale cleanup_pending", task: store.TaskFailed, state: store.CleanupPending, labels: own("s1"), now: 100 * time.Hour,
			msg:     func(m *events.CleanupMessage) { m.Reason = events.ReasonThreshold },
			wantRes: cleanup.ResultSkipped, wantState: store.Retained},
		{name: "held", task: store.TaskSucceeded, state: store.Held, labels: own("s1"),
			wantRes: cleanup.ResultSkipped, wantState: store.Held},
		{name: "held, manual cleanup", task: store.TaskSucceeded, state: store.Held, labels: own("s1"), now: 1000 * time.Hour,
			msg:     func(m *events.CleanupMessage) { m.Reason = events.ReasonManual },
			wantRes: cleanup.ResultSkipped, wantState: store.Held},
		{name: "refused earlier, label fixed since", task: store.TaskSucceeded, state: store.Refused, labels: own("s1"),
			wantRes: cleanup.ResultSkipped, wantState: store.Refused},
		{name: "message names another session", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			msg:     func(m *events.CleanupMessage) { m.SessionID = "s2" },
			wantRes: cleanup.ResultSkipped, wantState: store.CleanupPending},
		{name: "message names the label's session, not the registered one", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s2"),
			msg:     func(m *events.CleanupMessage) { m.SessionID = "s2" },
			wantRes: cleanup.ResultSkipped, wantState: store.CleanupPending},
		{name: "message for an unregistered snapshot", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			msg:     func(m *events.CleanupMessage) { m.Name = "snap-2" },
			between: func(f *fixture) { f.fake.AddSnapshot("proj-a", "snap-2", own("s1")) },
			wantRes: cleanup.ResultSkipped, wantState: store.CleanupPending},
		{name: "message for the same name in another project", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			msg:     func(m *events.CleanupMessage) { m.Project = "proj-b" },
			between: func(f *fixture) { f.fake.AddSnapshot("proj-b", "snap-1", own("s1")) },
			wantRes: cleanup.ResultSkipped, wantState: store.CleanupPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, gcefake.Options{}, nil)
			f.now = t0.Add(tc.now)
			msg := f.register(t, "proj-a", "snap-1", "s1", tc.task, tc.state, tc.labels)
			if tc.between != nil {
				tc.between(f)
			}
			if tc.msg != nil {
				tc.msg(&msg)
			}
			out, err := f.engine.Handle(context.Background(), msg)
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if out.Result != tc.wantRes {
				t.Errorf("result = %s (%s), want %s", out.Result, out.Why, tc.wantRes)
			}
			if got := f.state(t, "proj-a", "snap-1"); got != tc.wantState {
				t.Errorf("registry state of proj-a/snap-1 = %s, want %s", got, tc.wantState)
			}
			if got := f.deleteCalls(); len(got) != 0 {
				t.Errorf("delete calls: %+v, want none", got)
			}
			for _, k := range [][2]string{{"proj-a", "snap-1"}, {"proj-a", "snap-2"}, {"proj-b", "snap-1"}} {
				if _, seeded := f.fake.Snapshot(k[0], k[1]); !seeded {
					continue
				}
				if f.fake.SuccessfulDeletes(k[0], k[1]) != 0 || !f.fake.Exists(k[0], k[1]) {
					t.Errorf("%s/%s was deleted", k[0], k[1])
				}
			}
			want := []string(nil)
			if tc.wantReads {
				want = []string{"snapshots.get proj-a/snap-1"}
			}
			if diff := cmp.Diff(want, f.touched()); diff != "" {
				t.Errorf("compute calls (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAttackDuplicateNamesAcrossProjects: a name is unique only within its
// project. proj-a/snap's task succeeded, proj-b/snap's (same session, same
// name, another task) is still running: only proj-a/snap may go, and a
// message for proj-b/snap must not delete either.
func TestAttackDuplicateNamesAcrossProjects(t *testing.T) {
	t.Parallel()
	own := map[string]string{label: "s1"}
	f := newFixture(t, gcefake.Options{}, nil)
	msgA := f.registerTask(t, "proj-a", "snap", "s1", "vm-a", store.TaskSucceeded, store.CleanupPending, own)
	msgB := f.registerTask(t, "proj-b", "snap", "s1", "vm-b", store.TaskRunning, store.Active, own)

	// The message for proj-b first: it must not fall through to proj-a's record.
	outB, err := f.engine.Handle(context.Background(), msgB)
	if err != nil {
		t.Fatal(err)
	}
	// A message naming proj-b but proj-a's succeeded task changes nothing:
	// the registry's task decides, not the message.
	forged := msgB
	forged.TaskID = msgA.TaskID
	outForged, err := f.engine.Handle(context.Background(), forged)
	if err != nil {
		t.Fatal(err)
	}
	outA, err := f.engine.Handle(context.Background(), msgA)
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		Results          []cleanup.Result
		StateA, StateB   store.State
		DeleteCallsA     int
		DeleteCallsB     int
		ExistsA, ExistsB bool
		DeletedTargets   []string
	}
	want := result{
		Results: []cleanup.Result{cleanup.ResultSkipped, cleanup.ResultSkipped, cleanup.ResultDeleted},
		StateA:  store.Deleted, StateB: store.Active,
		DeleteCallsA: 1, DeleteCallsB: 0,
		ExistsA: false, ExistsB: true,
		DeletedTargets: []string{"proj-a/snap"},
	}
	got := result{
		Results: []cleanup.Result{outB.Result, outForged.Result, outA.Result},
		StateA:  f.state(t, "proj-a", "snap"), StateB: f.state(t, "proj-b", "snap"),
		DeleteCallsA: f.fake.DeleteCalls("proj-a", "snap"), DeleteCallsB: f.fake.DeleteCalls("proj-b", "snap"),
		ExistsA: f.fake.Exists("proj-a", "snap"), ExistsB: f.fake.Exists("proj-b", "snap"),
	}
	for _, c := range f.deleteCalls() {
		got.DeletedTargets = append(got.DeletedTargets, c.Project+"/"+c.Name)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	for _, c := range f.fake.Calls() {
		if c.Project != "proj-a" {
			t.Errorf("compute call %s %s/%s: only proj-a/snap should be touched", c.Method, c.Project, c.Name)
		}
	}
}

// craftedNames are registry keys that are not valid GCE identifiers but
// paths, queries or other projects in disguise. events rejects such names
// (and handlers checks the project allowlist) before a message reaches the
// engine; the tests below check the engine on its own, as if a record and a
// message had got there another way (a bug, a manual write, a restore, a
// future caller of Engine.Handle).
var craftedNames = []struct {
	name, project, snapshot string
}{
	{"name climbing to another project", "proj-a", "../../../proj-b/global/snapshots/x"},
	{"name climbing one level", "proj-a", "../other-proj/global/snapshots/x"},
	{"name with encoded slashes", "proj-a", "..%2F..%2F..%2Fproj-b%2Fglobal%2Fsnapshots%2Fx"},
	{"name carrying a query", "proj-a", "x?requestId=00000000-0000-0000-0000-000000000001"},
	{"name carrying a fragment", "proj-a", "x#frag"},
	{"name with a trailing slash", "proj-a", "x/"},
	{"name that is dot-dot", "proj-a", ".."},
	{"project climbing to another project", "proj-a/../proj-b", "x"},
	{"project with a path", "proj-b/global/snapshots/x/..", "x"},
	{"project with a query", "proj-b?x=", "x"},
	{"name with a space", "proj-a", "x y"},
	{"upper-case name", "proj-a", "X"},
	{"empty name", "proj-a", ""},
	{"empty project", "", "x"},
}

// craftedFixture seeds proj-a/x and proj-b/x, both carrying the owner label
// of session s1 (the worst case: the label check cannot save them), and
// registers the crafted key as a snapshot of a succeeded task of s1.
func craftedFixture(t *testing.T, project, snapshot string) (*fixture, cleanup.Outcome) {
	t.Helper()
	own := map[string]string{label: "s1"}
	f := newFixture(t, gcefake.Options{}, nil)
	f.fake.AddSnapshot("proj-a", "x", own)
	f.fake.AddSnapshot("proj-b", "x", own)
	msg := f.registerTask(t, project, snapshot, "s1", "vm-1", store.TaskSucceeded, store.CleanupPending, nil)
	out, err := f.engine.Handle(context.Background(), msg)
	t.Logf("result %s (%s), err %v; registry %s; compute calls %q", out.Result, out.Why, err, f.state(t, project, snapshot), f.touched())
	return f, out
}

// TestAttackCraftedNamesDeleteNothing: whatever the engine does with a
// crafted key, no snapshot may be deleted through it.
func TestAttackCraftedNamesDeleteNothing(t *testing.T) {
	t.Parallel()
	for _, tc := range craftedNames {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, _ := craftedFixture(t, tc.project, tc.snapshot)
			if got := f.deleteCalls(); len(got) != 0 {
				t.Errorf("delete calls: %+v, want none", got)
			}
			for _, p := range []string{"proj-a", "proj-b"} {
				if !f.fake.Exists(p, "x") || f.fake.SuccessfulDeletes(p, "x") != 0 {
					t.Errorf("%s/x was deleted through the registry key %q/%q", p, tc.project, tc.snapshot)
				}
			}
		})
	}
}

// TestAttackCraftedNamesMakeNoComputeCall: defence in depth. An invalid
// project id or snapshot name must not be pasted into a Compute URL at all:
// the generated REST client inserts path parameters unescaped ("/" and ".."
// stay as they are), and whether a dot segment is normalised away is up to
// every HTTP hop between snapsweep and Compute (Go's ServeMux, as in
// gcefake, answers 307 to the cleaned path and the client follows it with
// the same method). Nor may such a record be counted as deleted: no
// snapshot was deleted for it.
func TestAttackCraftedNamesMakeNoComputeCall(t *testing.T) {
	t.Parallel()
	for _, tc := range craftedNames {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, _ := craftedFixture(t, tc.project, tc.snapshot)
			if got := f.touched(); len(got) != 0 {
				t.Errorf("compute calls for an invalid project/name: %q, want none", got)
			}
			if st := f.state(t, tc.project, tc.snapshot); slices.Contains([]store.State{store.Deleted, store.Deleting}, st) {
				t.Errorf("registry records %q/%q as %s, though snapsweep deleted nothing for it", tc.project, tc.snapshot, st)
			}
		})
	}
}
