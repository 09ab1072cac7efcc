package ops_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/ops/opstest"
	"github.com/snapsweep/snapsweep/status"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
)

// The operator commands read and change the registry (Firestore) and
// publish cleanup messages (Pub/Sub): the tests run them on the emulators.
func TestMain(m *testing.M) { emulators.Main(m, emulators.Firestore, emulators.PubSub) }

// root is the operator commands' tree (package main adds its own).
func root(deps ops.Deps) *cobra.Command { return ops.Root("test", deps) }

func newEnv(t *testing.T) *opstest.Env { return opstest.New(t, root) }

func TestSnapshotsList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	old := now.Add(-100 * time.Hour)
	e.Put(t,
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
		r := e.Run(t, append([]string{"snapshots", "list", "-o", "json"}, c.args...)...)
		opstest.WantCode(t, strings.Join(c.args, " "), r, 0)
		if diff := cmp.Diff(c.want, opstest.Names(t, r.Stdout)); diff != "" {
			t.Errorf("snapshots list %v (-want +got):\n%s", c.args, diff)
		}
	}

	r := e.Run(t, "snapshots", "list", "--state", "refused")
	opstest.WantCode(t, "table", r, 0)
	if !strings.Contains(r.Stdout, "SNAPSHOT") || !strings.Contains(r.Stdout, e.Key("s2-a")) || !strings.Contains(r.Stdout, "label missing") {
		t.Errorf("table output:\n%s", r.Stdout)
	}
	r = e.Run(t, "snapshots", "list", "--limit", "2", "-o", "json")
	opstest.WantCode(t, "limit", r, 0)
	if got := opstest.Names(t, r.Stdout); len(got) != 2 || !strings.Contains(r.Stdout, `"more": true`) {
		t.Errorf("--limit 2: got %v\n%s", got, r.Stdout)
	}
	for _, args := range [][]string{
		{"--task", "t1"},        // a task needs its session
		{"--state", "sleeping"}, // no such state
		{"-o", "xml"},
		{"--older-than", "-1h"},
		{"--project", "Not A Project"},
	} {
		opstest.WantCode(t, strings.Join(args, " "), e.Run(t, append([]string{"snapshots", "list"}, args...)...), 2)
	}
}

func TestSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, id := range []string{"wave-1", "wave-2"} {
		at := now.Add(time.Duration(i) * time.Minute)
		if _, err := e.Reg.UpdateSession(ctx, id, func(*store.Session) (*store.Session, error) {
			s := &store.Session{State: store.SessionRunning, StartedAt: at, UpdatedAt: at}
			if id == "wave-1" {
				s.State, s.CompletedAt, s.Outcome, s.Deleted, s.Failed = store.SessionCompleted, at, store.OutcomeCleanedWithErrors, 2, 1
			}
			return s, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	e.Task(t, "wave-1", "vm-1", store.TaskSucceeded, now)
	e.Task(t, "wave-1", "vm-2", store.TaskFailed, now)
	e.Put(t,
		store.Snapshot{Name: "w1-a", SessionID: "wave-1", TaskID: "vm-1", State: store.Deleted, CreatedAt: now},
		store.Snapshot{Name: "w1-b", SessionID: "wave-1", TaskID: "vm-1", State: store.Deleted, CreatedAt: now},
		store.Snapshot{Name: "w1-c", SessionID: "wave-1", TaskID: "vm-2", State: store.Retained, CreatedAt: now},
		store.Snapshot{Name: "w1-d", SessionID: "wave-1", TaskID: "vm-1", State: store.Refused, CreatedAt: now},
		store.Snapshot{Name: "w2-a", SessionID: "wave-2", TaskID: "vm-1", State: store.Deleted, DeletedBy: "snapsweep", CreatedAt: now},
	)

	r := e.Run(t, "sessions", "list", "-o", "json")
	opstest.WantCode(t, "sessions list", r, 0)
	var list struct{ Sessions []store.Session }
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil || len(list.Sessions) != 2 || list.Sessions[0].SessionID != "wave-2" {
		t.Errorf("sessions list: %v\n%s", err, r.Stdout)
	}
	r = e.Run(t, "sessions", "list")
	opstest.WantCode(t, "sessions list table", r, 0)
	if !strings.Contains(r.Stdout, "cleaned_with_errors") {
		t.Errorf("table:\n%s", r.Stdout)
	}

	r = e.Run(t, "sessions", "show", "wave-1", "-o", "json")
	opstest.WantCode(t, "sessions show", r, 0)
	var shown struct {
		Session   store.Session
		Snapshots map[store.State]int64
		Tasks     map[store.TaskState]int64
	}
	if err := json.Unmarshal([]byte(r.Stdout), &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Session.Outcome != store.OutcomeCleanedWithErrors || shown.Snapshots[store.Deleted] != 2 ||
		shown.Snapshots[store.Retained] != 1 || shown.Snapshots[store.Refused] != 1 || shown.Tasks[store.TaskFailed] != 1 || shown.Tasks[store.TaskSucceeded] != 1 {
		t.Errorf("sessions show: %+v", shown)
	}
	r = e.Run(t, "sessions", "show", "wave-1")
	opstest.WantCode(t, "sessions show table", r, 0)
	for _, want := range []string{"deleted 2", "retained 1", "refused 1", "succeeded 1, failed 1"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("sessions show lacks %q:\n%s", want, r.Stdout)
		}
	}
	// Typos are errors naming the closest known ids, not empty successes.
	for _, c := range []struct {
		args []string
		say  string
	}{
		{[]string{"sessions", "show", "wave-3"}, `no session "wave-3" in the registry of project ` + e.Project + "; closest known sessions: wave-2, wave-1"},
		{[]string{"snapshots", "list", "--session", "wave-77"}, `no session "wave-77"`},
		{[]string{"snapshots", "list", "--session", "wave-1", "--task", "vm-3"}, `no task "vm-3" in session wave-1; closest known tasks: vm-1, vm-2`},
		{[]string{"cleanup", "session", "--session", "wave-77"}, `no session "wave-77"`},
		{[]string{"cleanup", "task", "--session", "wave-1", "--task", "vm-9"}, `no task "vm-9" in session wave-1`},
	} {
		r := e.Run(t, c.args...)
		opstest.WantCode(t, strings.Join(c.args, " "), r, 1)
		if !strings.Contains(r.Err.Error(), c.say) {
			t.Errorf("%v: error %v, want it to say %q", c.args, r.Err, c.say)
		}
	}
	r = e.Run(t, "sessions", "list")
	// wave-1's record says 2 deleted, 1 failed (judged); wave-2 is running
	// and its record has no counts: the listing counts the snapshots.
	counts := map[string][]string{}
	for _, line := range strings.Split(r.Stdout, "\n") {
		if f := strings.Fields(line); len(f) == 7 {
			counts[f[0]] = f[5:]
		}
	}
	if diff := cmp.Diff(map[string][]string{"SESSION": {"DELETED", "FAILED"}, "wave-1": {"2", "1"}, "wave-2": {"1", "0"}}, counts); diff != "" {
		t.Errorf("sessions list DELETED, FAILED (-want +got):\n%s\n%s", diff, r.Stdout)
	}
}

// TestCLICleanupNeedsYes: a manual cleanup without --yes prints the plan
// and changes nothing; with --yes it publishes manual cleanup messages for
// exactly the snapshots the rules allow.
func TestCleanupNeedsYes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	e.Task(t, "s1", "ok", store.TaskSucceeded, now.Add(-time.Hour))
	e.Task(t, "s1", "bad", store.TaskFailed, now.Add(-time.Hour))
	e.Task(t, "s1", "busy", store.TaskRunning, now.Add(-time.Hour))
	e.Put(t,
		store.Snapshot{Name: "ok-1", SessionID: "s1", TaskID: "ok", State: store.Active, CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "ok-2", SessionID: "s1", TaskID: "ok", State: store.Failed, CreatedAt: now.Add(-2 * time.Hour), Error: "boom"},
		store.Snapshot{Name: "ok-3", SessionID: "s1", TaskID: "ok", State: store.Held, PrevState: store.Active, HeldBy: "bob", HoldReason: "keep", CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "bad-1", SessionID: "s1", TaskID: "bad", State: store.Retained, CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "busy-1", SessionID: "s1", TaskID: "busy", State: store.Active, CreatedAt: now.Add(-2 * time.Hour)},
		store.Snapshot{Name: "gone-1", SessionID: "s1", TaskID: "ok", State: store.Deleted, CreatedAt: now.Add(-2 * time.Hour)},
	)

	r := e.Run(t, "cleanup", "task", "--session", "s1", "--task", "ok")
	opstest.WantCode(t, "dry run", r, 0)
	if !strings.Contains(r.Stderr, "nothing was published") || !strings.Contains(r.Stdout, "held by bob") {
		t.Errorf("dry run output:\nstdout:\n%s\nstderr:\n%s", r.Stdout, r.Stderr)
	}
	r = e.Run(t, "cleanup", "session", "--session", "s1", "-o", "json")
	opstest.WantCode(t, "dry run json", r, 0)
	var plan ops.CleanupResult
	if err := json.Unmarshal([]byte(r.Stdout), &plan); err != nil {
		t.Fatal(err)
	}
	actions := map[string]string{}
	for _, p := range plan.Plan {
		actions[strings.TrimPrefix(p.Snapshot, e.Project+"/")] = p.Action
	}
	want := map[string]string{"ok-1": "schedule", "ok-2": "schedule", "ok-3": "skip", "bad-1": "skip", "busy-1": "skip"}
	if diff := cmp.Diff(want, actions); diff != "" || !plan.DryRun {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if got := opstest.Receive(t, e.PS, e.Sub, 1, 2*time.Second); len(got) != 0 {
		t.Fatalf("a dry run published %d messages", len(got))
	}
	for _, n := range []string{"ok-1", "ok-2"} {
		if s := e.Get(t, n); s.State == store.CleanupPending {
			t.Errorf("a dry run claimed %s", n)
		}
	}

	r = e.Run(t, "cleanup", "session", "--session", "s1", "--yes")
	opstest.WantCode(t, "cleanup --yes", r, 0)
	if !strings.Contains(r.Stdout, "published 2 cleanup messages") {
		t.Errorf("output:\n%s", r.Stdout)
	}
	msgs := opstest.Receive(t, e.PS, e.Sub, 2, 20*time.Second)
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
		if s := e.Get(t, name); s.State != st {
			t.Errorf("%s: state %s, want %s", name, s.State, st)
		}
	}
	for _, args := range [][]string{{"cleanup", "task", "--session", "s1"}, {"cleanup", "session"}, {"cleanup", "session", "--session", "Bad Id"}} {
		opstest.WantCode(t, strings.Join(args, " "), e.Run(t, args...), 2)
	}
}

// TestCLIHoldRelease: hold is safe and immediate; release needs --yes and
// restores the previous state; a record whose DELETE may have gone out, or
// a deleted one, cannot be held.
func TestHoldRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	e.Put(t,
		store.Snapshot{Name: "keep-1", SessionID: "s1", TaskID: "t1", State: store.Retained, CreatedAt: now},
		store.Snapshot{Name: "pend-1", SessionID: "s1", TaskID: "t1", State: store.CleanupPending, CleanupReason: "task-completed", CreatedAt: now},
		// A DELETE may have gone out (armed): it cannot be held.
		store.Snapshot{Name: "del-1", SessionID: "s1", TaskID: "t1", State: store.Deleting, DeleteSentAt: now, CreatedAt: now},
		// Claimed, but no DELETE sent yet: the hold wins, the engine's last
		// check before the DELETE sees it.
		store.Snapshot{Name: "del-2", SessionID: "s1", TaskID: "t1", State: store.Deleting, LeaseOwner: "x", CreatedAt: now},
		store.Snapshot{Name: "gone-1", SessionID: "s1", TaskID: "t1", State: store.Deleted, DeletedBy: "snapsweep", CreatedAt: now},
	)
	r := e.Run(t, "hold", e.Key("keep-1"), "--reason", "INC-1: forensics")
	opstest.WantCode(t, "hold", r, 0)
	s := e.Get(t, "keep-1")
	if s.State != store.Held || s.PrevState != store.Retained || s.HeldBy != "tester" || s.HoldReason != "INC-1: forensics" {
		t.Errorf("after hold: %+v", s)
	}
	r = e.Run(t, "hold", e.Key("keep-1"), "--reason", "again", "--by", "alice")
	opstest.WantCode(t, "hold twice", r, 0)
	if s := e.Get(t, "keep-1"); s.HeldBy != "tester" || !strings.Contains(r.Stdout, "already held") {
		t.Errorf("a second hold changed the record or said nothing: %+v\n%s", s, r.Stdout)
	}

	r = e.Run(t, "release", e.Key("keep-1"))
	opstest.WantCode(t, "release without --yes", r, 0)
	if s := e.Get(t, "keep-1"); s.State != store.Held || !strings.Contains(r.Stdout, "would release") {
		t.Errorf("release without --yes changed the record: %+v\n%s", s, r.Stdout)
	}
	r = e.Run(t, "release", e.Key("keep-1"), "--yes", "-o", "json")
	opstest.WantCode(t, "release --yes", r, 0)
	if s := e.Get(t, "keep-1"); s.State != store.Retained || s.HeldBy != "" || s.HoldReason != "" || s.PrevState != "" {
		t.Errorf("after release: %+v", s)
	}

	// A pending cleanup on hold comes back as active.
	opstest.WantCode(t, "hold pending", e.Run(t, "hold", e.Key("pend-1"), "--reason", "check first"), 0)
	opstest.WantCode(t, "release pending", e.Run(t, "release", e.Key("pend-1"), "--yes"), 0)
	if s := e.Get(t, "pend-1"); s.State != store.Active {
		t.Errorf("released cleanup_pending record: state %s, want active", s.State)
	}

	opstest.WantCode(t, "hold of a claimed, unsent delete", e.Run(t, "hold", e.Key("del-2"), "--reason", "stop it"), 0)
	if s := e.Get(t, "del-2"); s.State != store.Held || s.LeaseOwner != "" {
		t.Errorf("after holding a claimed record: %+v", s)
	}
	for name, why := range map[string]string{"del-1": "may already have been accepted", "gone-1": "already deleted", "nope-1": "no such snapshot"} {
		r := e.Run(t, "hold", e.Key(name), "--reason", "x")
		opstest.WantCode(t, "hold "+name, r, 1)
		if !strings.Contains(r.Err.Error(), why) {
			t.Errorf("hold %s: error %v, want it to say %q", name, r.Err, why)
		}
	}
	if s := e.Get(t, "del-1"); s.State != store.Deleting {
		t.Errorf("a refused hold changed the record: %+v", s)
	}
	opstest.WantCode(t, "release of a record not held", e.Run(t, "release", e.Key("del-1"), "--yes"), 1)
	opstest.WantCode(t, "hold without reason", e.Run(t, "hold", e.Key("keep-1")), 2)
	opstest.WantCode(t, "hold bad key", e.Run(t, "hold", "not-a-key", "--reason", "x"), 2)
}

func TestRejectedList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for i, reason := range []string{"bad_json", "project_not_allowed"} {
		if err := e.Reg.AddRejected(context.Background(), store.Rejected{
			ID: "migration-events~m" + reason, MessageID: "m-" + reason, Endpoint: "migration-events", Reason: reason,
			Detail: "detail of " + reason, Payload: "{", Size: 1, ReceivedAt: now.Add(time.Duration(i) * time.Second), ExpireAt: now.Add(time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.Run(t, "rejected", "list")
	opstest.WantCode(t, "rejected list", r, 0)
	for _, want := range []string{"REASON", "bad_json", "project_not_allowed", "m-bad_json"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("rejected list lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = e.Run(t, "rejected", "list", "-o", "json", "--limit", "1")
	opstest.WantCode(t, "rejected list json", r, 0)
	var v struct{ Rejected []store.Rejected }
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || len(v.Rejected) != 1 || v.Rejected[0].Reason != "project_not_allowed" {
		t.Errorf("rejected list -o json --limit 1: %v\n%s", err, r.Stdout)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.Run(t, "health")
	opstest.WantCode(t, "no report yet", r, 1)
	save := func(at time.Time, st sweep.Status) {
		rep := sweep.Report{RunID: "r-" + string(st), Status: st, Checks: []sweep.Check{{Name: "compute:" + e.Project, Status: st, Reason: "reason " + string(st)}}}
		b, _ := json.Marshal(rep)
		if err := e.Reg.SaveHealth(context.Background(), store.HealthRecord{ID: at.Format(time.RFC3339Nano), At: at, Status: string(st), Report: string(b), ExpireAt: at.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	save(now.Add(-time.Hour), sweep.Failing)
	save(now, sweep.OK)
	r = e.Run(t, "health")
	opstest.WantCode(t, "latest ok", r, 0)
	if !strings.Contains(r.Stdout, "OK") || !strings.Contains(r.Stdout, "compute:"+e.Project) {
		t.Errorf("health:\n%s", r.Stdout)
	}
	r = e.Run(t, "health", "--last", "2", "-o", "json")
	opstest.WantCode(t, "last 2", r, 0)
	var v struct {
		Reports []struct {
			Status string
			Report *sweep.Report
		}
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil || len(v.Reports) != 2 || v.Reports[1].Report.Checks[0].Reason != "reason failing" {
		t.Errorf("health --last 2 -o json: %v\n%s", err, r.Stdout)
	}
	save(now.Add(time.Minute), sweep.Failing)
	r = e.Run(t, "health")
	opstest.WantCode(t, "latest failing", r, 1)
	if !strings.Contains(r.Stdout, "FAILING") || !strings.Contains(r.Stdout, "reason failing") {
		t.Errorf("health:\n%s", r.Stdout)
	}

	// --url: the latest report of a running service (GET /status).
	b, _ := json.Marshal(sweep.Report{Status: sweep.OK, Checks: []sweep.Check{{Name: "firestore-read", Status: sweep.OK}}})
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/status" {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(status.Report{Breaker: "closed", Version: "test",
			Health: status.NewHealth(now, "ok", string(b))})
	}))
	defer svc.Close()
	r = e.Run(t, "health", "--url", svc.URL)
	opstest.WantCode(t, "health --url", r, 0)
	if !strings.Contains(r.Stdout, "breaker closed") || !strings.Contains(r.Stdout, "firestore-read") {
		t.Errorf("health --url:\n%s", r.Stdout)
	}
	opstest.WantCode(t, "https --url", e.Run(t, "health", "--url", "https://snapsweep.example.com"), 2)
}

// TestCLISweep: a sweep in this process schedules an expired snapshot
// (after a dry run that changes nothing); --url asks a running service.
func TestSweep(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := time.Now().UTC().Add(-100 * time.Hour).Truncate(time.Microsecond)
	e.Put(t, store.Snapshot{Name: "exp-1", SessionID: "s1", TaskID: "t1", State: store.Active, CreatedAt: old, ExpiresAt: old.Add(72 * time.Hour)})
	e.Fake.AddSnapshot(e.Project, "exp-1", map[string]string{opstest.SessionLabel: "s1"})
	args := []string{"sweep", "--compute-endpoint", e.Compute, "-o", "json"}

	r := e.Run(t, append(args, "--dry-run")...)
	opstest.WantCode(t, "sweep --dry-run", r, 0)
	var rep sweep.Report
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.Stdout)
	}
	if !rep.DryRun || rep.Expired.Found != 1 || rep.Expired.Scheduled != 0 {
		t.Errorf("dry run report: %+v", rep)
	}
	if s := e.Get(t, "exp-1"); s.State != store.Active {
		t.Errorf("a dry-run sweep changed exp-1 to %s", s.State)
	}

	r = e.Run(t, args...)
	opstest.WantCode(t, "sweep", r, 0)
	rep = sweep.Report{}
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("%v\n%s", err, r.Stdout)
	}
	if rep.DryRun || rep.Expired.Scheduled != 1 || rep.Status != sweep.OK {
		t.Errorf("sweep report: %+v", rep)
	}
	if s := e.Get(t, "exp-1"); s.State != store.CleanupPending || s.CleanupReason != string(events.ReasonExpired) {
		t.Errorf("after the sweep exp-1 is %s (%s), want cleanup_pending (expired)", s.State, s.CleanupReason)
	}
	if got := opstest.Receive(t, e.PS, e.Sub, 1, 20*time.Second); len(got) != 1 {
		t.Errorf("the sweep published %d cleanup messages, want 1", len(got))
	}
	if e.Fake.DeleteCalls(e.Project, "exp-1") != 0 {
		t.Error("the sweep itself called delete")
	}
	r = e.Run(t, "sweep", "--compute-endpoint", e.Compute)
	opstest.WantCode(t, "sweep table", r, 0)
	if !strings.Contains(r.Stdout, "CHECK") || !strings.Contains(r.Stdout, "expired") {
		t.Errorf("sweep table:\n%s", r.Stdout)
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
	r = e.Run(t, "sweep", "--url", svc.URL, "--dry-run")
	opstest.WantCode(t, "sweep --url (failing checks)", r, 1)
	if gotBody["dryRun"] != true || !strings.Contains(r.Stdout, "remote-1") {
		t.Errorf("sweep --url: body %v\n%s", gotBody, r.Stdout)
	}
}

func TestOrphansIsReadOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	e.Put(t, store.Snapshot{Name: "known-1", SessionID: "s1", TaskID: "t1", State: store.Active, CreatedAt: now})
	e.Fake.AddSnapshot(e.Project, "known-1", map[string]string{opstest.SessionLabel: "s1"})
	e.Fake.AddSnapshot(e.Project, "lost-1", map[string]string{opstest.SessionLabel: "s1"})
	e.Fake.AddSnapshot(e.Project, "stranger-1", map[string]string{opstest.SessionLabel: "other-deployment"})
	e.Fake.AddSnapshot(e.Project, "unlabelled-1", map[string]string{"team": "x"})
	if _, err := e.Reg.CreateSession(context.Background(), &store.Session{SessionID: "s1", State: store.SessionRunning, StartedAt: now}); err != nil {
		t.Fatal(err)
	}
	r := e.Run(t, "orphans", "--compute-endpoint", e.Compute, "-o", "json")
	opstest.WantCode(t, "orphans", r, 0)
	var v struct {
		Orphans []ops.Orphan
		Checked int
	}
	if err := json.Unmarshal([]byte(r.Stdout), &v); err != nil {
		t.Fatalf("%v\n%s", err, r.Stdout)
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
	if _, err := e.Reg.GetSnapshot(context.Background(), store.Key{Project: e.Project, Name: "lost-1"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("orphans registered lost-1 (%v); it must only list", err)
	}
	for _, c := range e.Fake.Calls() {
		if c.Method != "snapshots.list" {
			t.Errorf("orphans made a %s call", c.Method)
		}
	}
	r = e.Run(t, "orphans", "--compute-endpoint", e.Compute)
	opstest.WantCode(t, "orphans table", r, 0)
	if !strings.Contains(r.Stdout, e.Key("lost-1")) || !strings.Contains(r.Stderr, "2 of 3 labelled snapshots") ||
		!strings.Contains(r.Stderr, "1 of them name sessions this registry never knew") {
		t.Errorf("orphans table:\nstdout:\n%s\nstderr:\n%s", r.Stdout, r.Stderr)
	}
}

// TestCompletionFromTheRegistry: session ids, task ids, states and snapshot
// keys complete from the registry the commands read.
func TestCompletionFromTheRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, id := range []string{"wave-1", "wave-2", "other"} {
		if _, err := e.Reg.CreateSession(context.Background(), &store.Session{SessionID: id, State: store.SessionRunning, StartedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	e.Task(t, "wave-1", "vm-1", store.TaskRunning, now)
	e.Task(t, "wave-1", "vm-2", store.TaskSucceeded, now)
	e.Put(t, store.Snapshot{Name: "keep-1", SessionID: "wave-1", TaskID: "vm-1", State: store.Active, CreatedAt: now},
		store.Snapshot{Name: "gone-1", SessionID: "wave-1", TaskID: "vm-2", State: store.Deleted, CreatedAt: now})
	complete := func(args ...string) []string {
		t.Helper()
		r := e.Run(t, append([]string{"__complete"}, args...)...)
		opstest.WantCode(t, strings.Join(args, " "), r, 0)
		var words []string
		for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
			if line != "" && !strings.HasPrefix(line, ":") {
				words = append(words, line)
			}
		}
		return words
	}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"snapshots", "list", "--session", "wave"}, []string{"wave-1", "wave-2"}},
		{[]string{"snapshots", "list", "--session", "wave-1", "--task", ""}, []string{"vm-1", "vm-2"}},
		{[]string{"snapshots", "list", "--state", "active,re"}, []string{"active,retained", "active,refused"}},
		{[]string{"sessions", "show", "oth"}, []string{"other"}},
		{[]string{"cleanup", "task", "--session", "wave-1", "--task", "vm-2"}, []string{"vm-2"}},
		{[]string{"hold", ""}, []string{e.Key("keep-1")}},
	}
	for _, tc := range cases {
		got := complete(tc.args...)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("completion of %q (-want +got):\n%s", tc.args, diff)
		}
	}
}

// TestUnreachableRegistryFailsWithinItsDeadline: with the registry
// unreachable, a command says on a terminal what it waits for, gives up
// at its --timeout and names the endpoint and the cause.
func TestUnreachableRegistryFailsWithinItsDeadline(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
	}{
		{"sessions list", []string{"sessions", "list"}},
		{"sessions show", []string{"sessions", "show", "wave-1"}},
		{"snapshots list", []string{"snapshots", "list", "--session", "wave-1"}},
		{"health", []string{"health"}},
		{"cleanup session", []string{"cleanup", "session", "--session", "wave-1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			deps := ops.DefaultDeps()
			deps.Lookup = func(k string) (string, bool) {
				v, ok := map[string]string{"GOOGLE_CLOUD_PROJECT": "my-project", "FIRESTORE_EMULATOR_HOST": "127.0.0.1:9"}[k]
				return v, ok
			}
			deps.Terminal = func(io.Writer) bool { return true }
			start := time.Now()
			r := opstest.Run(t, root(deps), deps, append(c.args, "--timeout", "3s")...)
			took := time.Since(start)
			if r.Code != 1 {
				t.Fatalf("exit code %d, want 1 (err %v)", r.Code, r.Err)
			}
			if took > 20*time.Second {
				t.Errorf("took %s with --timeout 3s", took)
			}
			if want := "no answer from the Firestore emulator at 127.0.0.1:9 (project my-project) within 3s"; !strings.Contains(r.Err.Error(), want) {
				t.Errorf("error does not say %q:\n%v", want, r.Err)
			}
			// The cause is the last error seen: the refused connection, or
			// (on a loaded machine, when no attempt finished in time) the
			// deadline.
			if msg := r.Err.Error(); !strings.Contains(msg, "connection refused") && !strings.Contains(msg, "deadline exceeded") {
				t.Errorf("error names no cause:\n%v", r.Err)
			}
			if want := "waiting for the Firestore emulator at 127.0.0.1:9 (project my-project)"; !strings.Contains(r.Stderr, want) {
				t.Errorf("stderr does not say %q:\n%s", want, r.Stderr)
			}
		})
	}
}
