package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/status"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
)

// cliEnv is a project of the test's own on the emulators, seeded through
// the store, with the cleanup topic and a pull subscription on it, and the
// Compute fake.
type cliEnv struct {
	project string
	vars    map[string]string
	reg     *store.Firestore
	ps      *pubsub.Client
	sub     string
	fake    *gcefake.Fake
	compute string // the fake's URL
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	emulators.Require(t, emulators.Firestore)
	emulators.Require(t, emulators.PubSub)
	ctx := context.Background()
	e := &cliEnv{project: emulators.ProjectID(t), fake: gcefake.New(gcefake.Options{})}
	e.vars = map[string]string{"GOOGLE_CLOUD_PROJECT": e.project, "USER": "tester",
		"FIRESTORE_EMULATOR_HOST": os.Getenv("FIRESTORE_EMULATOR_HOST"), "PUBSUB_EMULATOR_HOST": os.Getenv("PUBSUB_EMULATOR_HOST")}
	fs, err := firestore.NewClient(ctx, e.project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	e.reg = store.NewFirestore(fs)
	e.ps, err = pubsub.NewClient(ctx, e.project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.ps.Close() })
	topic := "projects/" + e.project + "/topics/snapshot-cleanup"
	if _, err := e.ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	e.sub = "projects/" + e.project + "/subscriptions/cleanup-check"
	if _, err := e.ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: e.sub, Topic: topic, AckDeadlineSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.fake)
	t.Cleanup(srv.Close)
	e.compute = srv.URL
	return e
}

type cliResult struct {
	stdout, stderr string
	err            error
	code           int
}

// run runs `snapsweep args...` as main would, with the env's environment.
func (e *cliEnv) run(t *testing.T, args ...string) cliResult {
	t.Helper()
	deps := ops.DefaultDeps()
	deps.Lookup = func(k string) (string, bool) { v, ok := e.vars[k]; return v, ok }
	deps.Terminal = func(io.Writer) bool { return false }
	return runCLI(t, deps, args...)
}

func runCLI(t *testing.T, deps ops.Deps, args ...string) cliResult {
	t.Helper()
	root := newRootCommand(deps)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := ops.Execute(ctx, root, args, deps.Terminal)
	return cliResult{stdout: out.String(), stderr: errOut.String(), err: err, code: exitCode(err)}
}

// put seeds snapshot records (project filled in) and their tasks.
func (e *cliEnv) put(t *testing.T, snaps ...store.Snapshot) {
	t.Helper()
	for _, s := range snaps {
		s.Project = e.project
		if s.UpdatedAt.IsZero() {
			s.UpdatedAt = s.CreatedAt
		}
		s.RegisteredAt = s.CreatedAt
		if err := e.reg.PutSnapshot(context.Background(), &s); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *cliEnv) task(t *testing.T, session, task string, st store.TaskState, at time.Time) {
	t.Helper()
	_, err := e.reg.UpdateTask(context.Background(), store.TaskKey{SessionID: session, TaskID: task}, func(*store.Task) (*store.Task, error) {
		return &store.Task{State: st, StateTime: at, UpdatedAt: at, StartedAt: at.Add(-time.Hour)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *cliEnv) get(t *testing.T, name string) *store.Snapshot {
	t.Helper()
	s, err := e.reg.GetSnapshot(context.Background(), store.Key{Project: e.project, Name: name})
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return s
}

func (e *cliEnv) key(name string) string { return e.project + "/" + name }

func wantCode(t *testing.T, what string, r cliResult, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit code %d, want %d (err %v)\nstdout:\n%s\nstderr:\n%s", what, r.code, code, r.err, r.stdout, r.stderr)
	}
}

// names decodes {"snapshots":[...]} and returns the names, sorted.
func names(t *testing.T, stdout string) []string {
	t.Helper()
	var v struct {
		Snapshots []store.Snapshot `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	var out []string
	for _, s := range v.Snapshots {
		out = append(out, s.Name)
	}
	slices.Sort(out)
	return out
}

func TestCLISnapshotsList(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := now.Add(-100 * time.Hour)
	e.put(t,
		store.Snapshot{Name: "s1-a", SessionID: "s1", TaskID: "t1", State: store.Active, CreatedAt: old},
		store.Snapshot{Name: "s1-b", SessionID: "s1", TaskID: "t1", State: store.Active, CreatedAt: now},
		store.Snapshot{Name: "s1-c", SessionID: "s1", TaskID: "t2", State: store.Retained, CreatedAt: old, Error: ""},
		store.Snapshot{Name: "s2-a", SessionID: "s2", TaskID: "t1", State: store.Refused, CreatedAt: now, Error: "label missing"},
		store.Snapshot{Name: "s2-b", SessionID: "s2", TaskID: "t1", State: store.Deleted, CreatedAt: old, DeletedBy: "snapsweep"},
	)
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--session", "s1"}, []string{"s1-a", "s1-b", "s1-c"}},
		{[]string{"--session", "s1", "--task", "t1"}, []string{"s1-a", "s1-b"}},
		{[]string{"--state", "refused,retained"}, []string{"s1-c", "s2-a"}},
		{[]string{"--older-than", "72h"}, []string{"s1-a", "s1-c", "s2-b"}},
		{[]string{"--state", "active", "--older-than", "72h"}, []string{"s1-a"}},
		// No index for session + state + age: narrowed by the index, aged here.
		{[]string{"--session", "s1", "--state", "active", "--older-than", "72h"}, []string{"s1-a"}},
		{[]string{"--session", "s1", "--task", "t1", "--state", "active"}, []string{"s1-a", "s1-b"}},
		{nil, []string{"s1-a", "s1-b", "s1-c", "s2-a", "s2-b"}},
	}
	for _, c := range cases {
		r := e.run(t, append([]string{"snapshots", "list", "-o", "json"}, c.args...)...)
		wantCode(t, strings.Join(c.args, " "), r, 0)
		if diff := cmp.Diff(c.want, names(t, r.stdout)); diff != "" {
			t.Errorf("snapshots list %v (-want +got):\n%s", c.args, diff)
		}
	}

	r := e.run(t, "snapshots", "list", "--state", "refused")
	wantCode(t, "table", r, 0)
	if !strings.Contains(r.stdout, "SNAPSHOT") || !strings.Contains(r.stdout, e.key("s2-a")) || !strings.Contains(r.stdout, "label missing") {
		t.Errorf("table output:\n%s", r.stdout)
	}
	r = e.run(t, "snapshots", "list", "--limit", "2", "-o", "json")
	wantCode(t, "limit", r, 0)
	if got := names(t, r.stdout); len(got) != 2 || !strings.Contains(r.stdout, `"more": true`) {
		t.Errorf("--limit 2: got %v\n%s", got, r.stdout)
	}
	for _, args := range [][]string{
		{"--task", "t1"},        // a task needs its session
		{"--state", "sleeping"}, // no such state
		{"-o", "xml"},
		{"--older-than", "-1h"},
		{"--project", "Not A Project"},
	} {
		wantCode(t, strings.Join(args, " "), e.run(t, append([]string{"snapshots", "list"}, args...)...), 2)
	}
}

func TestCLISessions(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, id := range []string{"wave-1", "wave-2"} {
		at := now.Add(time.Duration(i) * time.Minute)
		if _, err := e.reg.UpdateSession(ctx, id, func(*store.Session) (*store.Session, error) {
			s := &store.Session{State: store.SessionRunning, StartedAt: at, UpdatedAt: at}
			if id == "wave-1" {
				s.State, s.CompletedAt, s.Outcome, s.Deleted, s.Failed = store.SessionCompleted, at, store.OutcomeCleanedWithErrors, 2, 1
			}
			return s, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.task(t, "wave-1", "vm-1", store.TaskSucceeded, now)
	e.task(t, "wave-1", "vm-2", store.TaskFailed, now)
	e.put(t,
		store.Snapshot{Name: "w1-a", SessionID: "wave-1", TaskID: "vm-1", State: store.Deleted, CreatedAt: now},
		store.Snapshot{Name: "w1-b", SessionID: "wave-1", TaskID: "vm-1", State: store.Deleted, CreatedAt: now},
		store.Snapshot{Name: "w1-c", SessionID: "wave-1", TaskID: "vm-2", State: store.Retained, CreatedAt: now},
		store.Snapshot{Name: "w1-d", SessionID: "wave-1", TaskID: "vm-1", State: store.Refused, CreatedAt: now},
		store.Snapshot{Name: "w2-a", SessionID: "wave-2", TaskID: "vm-1", State: store.Deleted, DeletedBy: "snapsweep", CreatedAt: now},
	)

	r := e.run(t, "sessions", "list", "-o", "json")
	wantCode(t, "sessions list", r, 0)
	var list struct{ Sessions []store.Session }
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list.Sessions) != 2 || list.Sessions[0].SessionID != "wave-2" {
		t.Errorf("sessions list: %v\n%s", err, r.stdout)
	}
	r = e.run(t, "sessions", "list")
	wantCode(t, "sessions list table", r, 0)
	if !strings.Contains(r.stdout, "cleaned_with_errors") {
		t.Errorf("table:\n%s", r.stdout)
	}

	r = e.run(t, "sessions", "show", "wave-1", "-o", "json")
	wantCode(t, "sessions show", r, 0)
	var shown struct {
		Session   store.Session
		Snapshots map[store.State]int64
		Tasks     map[store.TaskState]int64
	}
	if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Session.Outcome != store.OutcomeCleanedWithErrors || shown.Snapshots[store.Deleted] != 2 ||
		shown.Snapshots[store.Retained] != 1 || shown.Snapshots[store.Refused] != 1 || shown.Tasks[store.TaskFailed] != 1 || shown.Tasks[store.TaskSucceeded] != 1 {
		t.Errorf("sessions show: %+v", shown)
	}
	r = e.run(t, "sessions", "show", "wave-1")
	wantCode(t, "sessions show table", r, 0)
	for _, want := range []string{"deleted 2", "retained 1", "refused 1", "succeeded 1, failed 1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("sessions show lacks %q:\n%s", want, r.stdout)
		}
	}
	// Typos are errors naming the closest known ids, not empty successes.
	for _, c := range []struct {
		args []string
		say  string
	}{
		{[]string{"sessions", "show", "wave-3"}, `no session "wave-3" in the registry of project ` + e.project + "; closest known sessions: wave-2, wave-1"},
		{[]string{"snapshots", "list", "--session", "wave-77"}, `no session "wave-77"`},
		{[]string{"snapshots", "list", "--session", "wave-1", "--task", "vm-3"}, `no task "vm-3" in session wave-1; closest known tasks: vm-1, vm-2`},
		{[]string{"cleanup", "session", "--session", "wave-77"}, `no session "wave-77"`},
		{[]string{"cleanup", "task", "--session", "wave-1", "--task", "vm-9"}, `no task "vm-9" in session wave-1`},
	} {
		r := e.run(t, c.args...)
		wantCode(t, strings.Join(c.args, " "), r, 1)
		if !strings.Contains(r.err.Error(), c.say) {
			t.Errorf("%v: error %v, want it to say %q", c.args, r.err, c.say)
		}
	}
	r = e.run(t, "sessions", "list")
	// wave-1's record says 2 deleted, 1 failed (judged); wave-2 is running
	// and its record has no counts: the listing counts the snapshots.
	counts := map[string][]string{}
	for _, line := range strings.Split(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) == 7 {
			counts[f[0]] = f[5:]
		}
	}
	if diff := cmp.Diff(map[string][]string{"SESSION": {"DELETED", "FAILED"}, "wave-1": {"2", "1"}, "wave-2": {"1", "0"}}, counts); diff != "" {
		t.Errorf("sessions list DELETED, FAILED (-want +got):\n%s\n%s", diff, r.stdout)
	}
}

// TestCLICleanupNeedsYes: a manual cleanup without --yes prints the plan
// and changes nothing; with --yes it publishes manual cleanup messages for
// exactly the snapshots the rules allow.
func TestCLICleanupNeedsYes(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	e.task(t, "s1", "ok", store.TaskSucceeded, now.Add(-time.Hour))
	e.task(t, "s1", "bad", store.TaskFailed, now.Add(-time.Hour))
	e.task(t, "s1", "busy", store.TaskRunning, now.Add(-time.Hour))
	e.put(t,
		store.Snapshot{Name: "ok-1", SessionID: "s1", TaskID: "ok", State: store.Active, CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "ok-2", SessionID: "s1", TaskID: "ok", State: store.Failed, CreatedAt: now.Add(-2 * time.Hour), Error: "boom"},
		store.Snapshot{Name: "ok-3", SessionID: "s1", TaskID: "ok", State: store.Held, PrevState: store.Active, HeldBy: "bob", HoldReason: "keep", CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "bad-1", SessionID: "s1", TaskID: "bad", State: store.Retained, CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "busy-1", SessionID: "s1", TaskID: "busy", State: store.Active, CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "gone-1", SessionID: "s1", TaskID: "ok", State: store.Deleted, CreatedAt: now.Add(-2 * time.Hour)},
	)

	r := e.run(t, "cleanup", "task", "--session", "s1", "--task", "ok")
	wantCode(t, "dry run", r, 0)
	if !strings.Contains(r.stderr, "nothing was published") || !strings.Contains(r.stdout, "held by bob") {
		t.Errorf("dry run output:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
	r = e.run(t, "cleanup", "session", "--session", "s1", "-o", "json")
	wantCode(t, "dry run json", r, 0)
	var plan ops.CleanupResult
	if err := json.Unmarshal([]byte(r.stdout), &plan); err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for _, p := range plan.Plan {
		actions[strings.TrimPrefix(p.Snapshot, e.project+"/")] = p.Action
	}
	want := map[string]string{"ok-1": "schedule", "ok-2": "schedule", "ok-3": "skip", "bad-1": "skip", "busy-1": "skip"}
	if diff := cmp.Diff(want, actions); diff != "" || !plan.DryRun {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if got := receive(t, e.ps, e.sub, 1, 2*time.Second); len(got) != 0 {
		t.Fatalf("a dry run published %d messages", len(got))
	}
	for _, n := range []string{"ok-1", "ok-2"} {
		if s := e.get(t, n); s.State == store.CleanupPending {
			t.Errorf("a dry run claimed %s", n)
		}
	}

	r = e.run(t, "cleanup", "session", "--session", "s1", "--yes")
	wantCode(t, "cleanup --yes", r, 0)
	if !strings.Contains(r.stdout, "published 2 cleanup messages") {
		t.Errorf("output:\n%s", r.stdout)
	}
	msgs := receive(t, e.ps, e.sub, 2, 20*time.Second)
	var got []string
	for _, m := range msgs {
		c, err := events.DecodeCleanup(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		if c.Reason != events.ReasonManual || c.SessionID != "s1" {
			t.Errorf("message %+v: want reason manual, session s1", c)
		}
		got = append(got, c.Name)
	}
	slices.Sort(got)
	if diff := cmp.Diff([]string{"ok-1", "ok-2"}, got); diff != "" {
		t.Errorf("published cleanups (-want +got):\n%s", diff)
	}
	for name, st := range map[string]store.State{"ok-1": store.CleanupPending, "ok-2": store.CleanupPending,
		"ok-3": store.Held, "bad-1": store.Retained, "busy-1": store.Active} {
		if s := e.get(t, name); s.State != st {
			t.Errorf("%s: state %s, want %s", name, s.State, st)
		}
	}
	for _, args := range [][]string{{"cleanup", "task", "--session", "s1"}, {"cleanup", "session"}, {"cleanup", "session", "--session", "Bad Id"}} {
		wantCode(t, strings.Join(args, " "), e.run(t, args...), 2)
	}
}

// TestCLIHoldRelease: hold is safe and immediate; release needs --yes and
// restores the previous state; a record whose DELETE may have gone out, or
// a deleted one, cannot be held.
func TestCLIHoldRelease(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	e.put(t,
		store.Snapshot{Name: "keep-1", SessionID: "s1", TaskID: "t1", State: store.Retained, CreatedAt: now},
		store.Snapshot{Name: "pend-1", SessionID: "s1", TaskID: "t1", State: store.CleanupPending, CleanupReason: "task-completed", CreatedAt: now},
		// A DELETE may have gone out (armed): it cannot be held.
		store.Snapshot{Name: "del-1", SessionID: "s1", TaskID: "t1", State: store.Deleting, DeleteSentAt: now, CreatedAt: now},
		// Claimed, but no DELETE sent yet: the hold wins, the engine's last
		// check before the DELETE sees it.
		store.Snapshot{Name: "del-2", SessionID: "s1", TaskID: "t1", State: store.Deleting, LeaseOwner: "x", CreatedAt: now},
		store.Snapshot{Name: "gone-1", SessionID: "s1", TaskID: "t1", State: store.Deleted, DeletedBy: "snapsweep", CreatedAt: now},
	)
	r := e.run(t, "hold", e.key("keep-1"), "--reason", "INC-1: forensics")
	wantCode(t, "hold", r, 0)
	s := e.get(t, "keep-1")
	if s.State != store.Held || s.PrevState != store.Retained || s.HeldBy != "tester" || s.HoldReason != "INC-1: forensics" {
		t.Errorf("after hold: %+v", s)
	}
	r = e.run(t, "hold", e.key("keep-1"), "--reason", "again", "--by", "alice")
	wantCode(t, "hold twice", r, 0)
	if s := e.get(t, "keep-1"); s.HeldBy != "tester" || !strings.Contains(r.stdout, "already held") {
		t.Errorf("a second hold changed the record or said nothing: %+v\n%s", s, r.stdout)
	}

	r = e.run(t, "release", e.key("keep-1"))
	wantCode(t, "release without --yes", r, 0)
	if s := e.get(t, "keep-1"); s.State != store.Held || !strings.Contains(r.stdout, "would release") {
		t.Errorf("release without --yes changed the record: %+v\n%s", s, r.stdout)
	}
	r = e.run(t, "release", e.key("keep-1"), "--yes", "-o", "json")
	wantCode(t, "release --yes", r, 0)
	if s := e.get(t, "keep-1"); s.State != store.Retained || s.HeldBy != "" || s.HoldReason != "" || s.PrevState != "" {
		t.Errorf("after release: %+v", s)
	}

	// A pending cleanup on hold comes back as active.
	wantCode(t, "hold pending", e.run(t, "hold", e.key("pend-1"), "--reason", "check first"), 0)
	wantCode(t, "release pending", e.run(t, "release", e.key("pend-1"), "--yes"), 0)
	if s := e.get(t, "pend-1"); s.State != store.Active {
		t.Errorf("released cleanup_pending record: state %s, want active", s.State)
	}

	wantCode(t, "hold of a claimed, unsent delete", e.run(t, "hold", e.key("del-2"), "--reason", "stop it"), 0)
	if s := e.get(t, "del-2"); s.State != store.Held || s.LeaseOwner != "" {
		t.Errorf("after holding a claimed record: %+v", s)
	}
	for name, why := range map[string]string{"del-1": "may already have been accepted", "gone-1": "already deleted", "nope-1": "no such snapshot"} {
		r := e.run(t, "hold", e.key(name), "--reason", "x")
		wantCode(t, "hold "+name, r, 1)
		if !strings.Contains(r.err.Error(), why) {
			t.Errorf("hold %s: error %v, want it to say %q", name, r.err, why)
		}
	}
	if s := e.get(t, "del-1"); s.State != store.Deleting {
		t.Errorf("a refused hold changed the record: %+v", s)
	}
	wantCode(t, "release of a record not held", e.run(t, "release", e.key("del-1"), "--yes"), 1)
	wantCode(t, "hold without reason", e.run(t, "hold", e.key("keep-1")), 2)
	wantCode(t, "hold bad key", e.run(t, "hold", "not-a-key", "--reason", "x"), 2)
}

func TestCLIRejectedList(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, reason := range []string{"bad_json", "project_not_allowed"} {
		if err := e.reg.AddRejected(context.Background(), store.Rejected{
			ID: "migration-events~m" + reason, MessageID: "m-" + reason, Endpoint: "migration-events", Reason: reason,
			Detail: "detail of " + reason, Payload: "{", Size: 1, ReceivedAt: now.Add(time.Duration(i) * time.Second), ExpireAt: now.Add(time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.run(t, "rejected", "list")
	wantCode(t, "rejected list", r, 0)
	for _, want := range []string{"REASON", "bad_json", "project_not_allowed", "m-bad_json"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("rejected list lacks %q:\n%s", want, r.stdout)
		}
	}
	r = e.run(t, "rejected", "list", "-o", "json", "--limit", "1")
	wantCode(t, "rejected list json", r, 0)
	var v struct{ Rejected []store.Rejected }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v.Rejected) != 1 || v.Rejected[0].Reason != "project_not_allowed" {
		t.Errorf("rejected list -o json --limit 1: %v\n%s", err, r.stdout)
	}
}

func TestCLIHealth(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	r := e.run(t, "health")
	wantCode(t, "no report yet", r, 1)
	save := func(at time.Time, st sweep.Status) {
		rep := sweep.Report{RunID: "r-" + string(st), Status: st, Checks: []sweep.Check{{Name: "compute:" + e.project, Status: st, Reason: "reason " + string(st)}}}
		b, _ := json.Marshal(rep)
		if err := e.reg.SaveHealth(context.Background(), store.HealthRecord{ID: at.Format(time.RFC3339Nano), At: at, Status: string(st), Report: string(b), ExpireAt: at.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	save(now.Add(-time.Hour), sweep.Failing)
	save(now, sweep.OK)
	r = e.run(t, "health")
	wantCode(t, "latest ok", r, 0)
	if !strings.Contains(r.stdout, "OK") || !strings.Contains(r.stdout, "compute:"+e.project) {
		t.Errorf("health:\n%s", r.stdout)
	}
	r = e.run(t, "health", "--last", "2", "-o", "json")
	wantCode(t, "last 2", r, 0)
	var v struct {
		Reports []struct {
			Status string
			Report *sweep.Report
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || len(v.Reports) != 2 || v.Reports[1].Report.Checks[0].Reason != "reason failing" {
		t.Errorf("health --last 2 -o json: %v\n%s", err, r.stdout)
	}
	save(now.Add(time.Minute), sweep.Failing)
	r = e.run(t, "health")
	wantCode(t, "latest failing", r, 1)
	if !strings.Contains(r.stdout, "FAILING") || !strings.Contains(r.stdout, "reason failing") {
		t.Errorf("health:\n%s", r.stdout)
	}

	// --url: the latest report of a running service (GET /status).
	b, _ := json.Marshal(sweep.Report{Status: sweep.OK, Checks: []sweep.Check{{Name: "firestore-read", Status: sweep.OK}}})
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(status.Report{Breaker: "closed", Version: "test",
			Health: status.NewHealth(store.HealthRecord{At: now, Status: "ok", Report: string(b)})})
	}))
	defer svc.Close()
	r = e.run(t, "health", "--url", svc.URL)
	wantCode(t, "health --url", r, 0)
	if !strings.Contains(r.stdout, "breaker closed") || !strings.Contains(r.stdout, "firestore-read") {
		t.Errorf("health --url:\n%s", r.stdout)
	}
	wantCode(t, "https --url", e.run(t, "health", "--url", "https://snapsweep.example.com"), 2)
}

// TestCLISweep: a sweep in this process schedules an expired snapshot
// (after a dry run that changes nothing); --url asks a running service.
func TestCLISweep(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	old := time.Now().UTC().Add(-100 * time.Hour).Truncate(time.Microsecond)
	e.put(t, store.Snapshot{Name: "exp-1", SessionID: "s1", TaskID: "t1", State: store.Active, CreatedAt: old, ExpiresAt: old.Add(72 * time.Hour)})
	e.fake.AddSnapshot(e.project, "exp-1", map[string]string{sessionLabel: "s1"})
	args := []string{"sweep", "--compute-endpoint", e.compute, "-o", "json"}

	r := e.run(t, append(args, "--dry-run")...)
	wantCode(t, "sweep --dry-run", r, 0)
	var rep sweep.Report
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if !rep.DryRun || rep.Expired.Found != 1 || rep.Expired.Scheduled != 0 {
		t.Errorf("dry run report: %+v", rep)
	}
	if s := e.get(t, "exp-1"); s.State != store.Active {
		t.Errorf("a dry-run sweep changed exp-1 to %s", s.State)
	}

	r = e.run(t, args...)
	wantCode(t, "sweep", r, 0)
	rep = sweep.Report{}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if rep.DryRun || rep.Expired.Scheduled != 1 || rep.Status != sweep.OK {
		t.Errorf("sweep report: %+v", rep)
	}
	if s := e.get(t, "exp-1"); s.State != store.CleanupPending || s.CleanupReason != string(events.ReasonExpired) {
		t.Errorf("after the sweep exp-1 is %s (%s), want cleanup_pending (expired)", s.State, s.CleanupReason)
	}
	if got := receive(t, e.ps, e.sub, 1, 20*time.Second); len(got) != 1 {
		t.Errorf("the sweep published %d cleanup messages, want 1", len(got))
	}
	if e.fake.DeleteCalls(e.project, "exp-1") != 0 {
		t.Error("the sweep itself called delete")
	}
	r = e.run(t, "sweep", "--compute-endpoint", e.compute)
	wantCode(t, "sweep table", r, 0)
	if !strings.Contains(r.stdout, "CHECK") || !strings.Contains(r.stdout, "expired") {
		t.Errorf("sweep table:\n%s", r.stdout)
	}

	var gotBody map[string]any
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/scheduler/sweep" {
			http.NotFound(w, r)
			return
		}
		json.NewDecoder(r.Body).Decode(&gotBody)
		json.NewEncoder(w).Encode(sweep.Report{RunID: "remote-1", Status: sweep.Failing, DryRun: true,
			Checks: []sweep.Check{{Name: "compute:x", Status: sweep.Failing, Reason: "503"}}})
	}))
	defer svc.Close()
	r = e.run(t, "sweep", "--url", svc.URL, "--dry-run")
	wantCode(t, "sweep --url (failing checks)", r, 1)
	if gotBody["dryRun"] != true || !strings.Contains(r.stdout, "remote-1") {
		t.Errorf("sweep --url: body %v\n%s", gotBody, r.stdout)
	}
}

func TestCLIOrphansIsReadOnly(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	e.put(t, store.Snapshot{Name: "known-1", SessionID: "s1", TaskID: "t1", State: store.Active, CreatedAt: now})
	e.fake.AddSnapshot(e.project, "known-1", map[string]string{sessionLabel: "s1"})
	e.fake.AddSnapshot(e.project, "lost-1", map[string]string{sessionLabel: "s1"})
	e.fake.AddSnapshot(e.project, "stranger-1", map[string]string{sessionLabel: "other-deployment"})
	e.fake.AddSnapshot(e.project, "unlabelled-1", map[string]string{"team": "x"})
	if _, err := e.reg.CreateSession(context.Background(), &store.Session{SessionID: "s1", State: store.SessionRunning, StartedAt: now}); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, "orphans", "--compute-endpoint", e.compute, "-o", "json")
	wantCode(t, "orphans", r, 0)
	var v struct {
		Orphans []ops.Orphan
		Checked int
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	byName := map[string]ops.Orphan{}
	for _, o := range v.Orphans {
		byName[o.Name] = o
	}
	lost, stranger := byName["lost-1"], byName["stranger-1"]
	if len(v.Orphans) != 2 || lost.SessionLabel != "s1" || !lost.KnownSession || !strings.Contains(lost.Sweep, "grace") ||
		stranger.KnownSession || !strings.Contains(stranger.Sweep, "never adopted") || v.Checked != 3 {
		t.Errorf("orphans: %+v", v)
	}
	if _, err := e.reg.GetSnapshot(context.Background(), store.Key{Project: e.project, Name: "lost-1"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("orphans registered lost-1 (%v); it must only list", err)
	}
	for _, c := range e.fake.Calls() {
		if c.Method != "snapshots.list" {
			t.Errorf("orphans made a %s call", c.Method)
		}
	}
	r = e.run(t, "orphans", "--compute-endpoint", e.compute)
	wantCode(t, "orphans table", r, 0)
	if !strings.Contains(r.stdout, e.key("lost-1")) || !strings.Contains(r.stderr, "2 of 3 labelled snapshots") ||
		!strings.Contains(r.stderr, "1 of them name sessions this registry never knew") {
		t.Errorf("orphans table:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	}
}

// TestCLICommandTree: every operator command documents itself with
// examples and -o, completion works, and missing configuration is a usage
// error (exit code 2).
func TestCLICommandTree(t *testing.T) {
	t.Parallel()
	deps := ops.DefaultDeps()
	deps.Lookup = func(string) (string, bool) { return "", false }
	root := newRootCommand(deps)
	var walk func(c *cobra.Command)
	leaves := 0
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() {
			for _, s := range c.Commands() {
				walk(s)
			}
			return
		}
		if !c.Runnable() || c.Parent() == nil {
			return
		}
		top := c
		for top.Parent() != root {
			top = top.Parent()
		}
		switch top.Name() {
		case "serve", "fake-compute", "publish", "completion", "help":
			return
		}
		leaves++
		if c.Example == "" {
			t.Errorf("%s has no examples in --help", c.CommandPath())
		}
		if c.Flags().Lookup("output") == nil && top.Name() != "demo" {
			t.Errorf("%s has no -o/--output", c.CommandPath())
		}
	}
	walk(root)
	if leaves < 11 {
		t.Errorf("found %d operator commands, want at least 11", leaves)
	}
	r := runCLI(t, deps, "completion", "bash")
	if r.code != 0 || !strings.Contains(r.stdout, "bash completion") {
		t.Errorf("completion bash: %v\n%.200s", r.err, r.stdout)
	}
	r = runCLI(t, deps, "snapshots", "list")
	if r.code != 2 || !strings.Contains(r.err.Error(), "GOOGLE_CLOUD_PROJECT") {
		t.Errorf("no project: exit %d, %v; want 2 naming GOOGLE_CLOUD_PROJECT", r.code, r.err)
	}
	r = runCLI(t, deps, "snapshots", "list", "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "Examples:") {
		t.Errorf("--help: %v\n%s", r.err, r.stdout)
	}
}
