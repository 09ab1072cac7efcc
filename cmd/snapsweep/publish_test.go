package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"
	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/ops/opstest"
	"github.com/snapsweep/snapsweep/reporter"
	"github.com/snapsweep/snapsweep/store"
)

// TestJobReporterEndToEnd is a migration job written with the reporter,
// against a running service on the emulators: three tasks run side by side,
// two succeed and one fails, then the session completes. The succeeded
// tasks' snapshots are deleted, the failed task's kept, the session is
// cleaned, and the job can read all of it from GET /status?session=.
func TestJobReporterEndToEnd(t *testing.T) {
	t.Parallel()
	e := startEnv(t, nil)
	e.pushTo(t, "migration-events", "/pubsub/migration-events")
	e.pushTo(t, "snapshot-cleanup", "/pubsub/snapshot-cleanup")
	ctx := context.Background()

	r, err := reporter.New(e.ps, "migration-events", "wave-1")
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SessionStarted(ctx); err != nil {
		t.Fatal(err)
	}
	tasks := []struct {
		id    string
		snaps []string
		fail  string
	}{
		{"vm-1", []string{"vm-1-boot", "vm-1-data"}, ""},
		{"vm-2", []string{"vm-2-boot"}, ""},
		{"vm-3", []string{"vm-3-boot", "vm-3-data"}, "disk attach timed out"},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(tasks))
	for _, task := range tasks {
		wg.Go(func() {
			errs <- func() error {
				if err := r.TaskStarted(ctx, task.id); err != nil {
					return err
				}
				for _, name := range task.snaps {
					// The job creates the snapshot with the reporter's labels,
					// then registers it.
					e.fake.AddSnapshot(e.project, name, r.Labels())
					if err := r.SnapshotCreated(ctx, task.id, events.SnapshotRef{Project: e.project, Name: name, SourceDisk: "disk-" + name}); err != nil {
						return err
					}
				}
				if task.fail != "" {
					return r.TaskFailed(ctx, task.id, task.fail)
				}
				return r.TaskCompleted(ctx, task.id)
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("report: %v", err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if err := r.SessionCompleted(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}

	want := map[string]store.State{
		"vm-1-boot": store.Deleted, "vm-1-data": store.Deleted, "vm-2-boot": store.Deleted,
		"vm-3-boot": store.Retained, "vm-3-data": store.Retained,
	}
	waitFor(t, "snapshots settled", 90*time.Second, func() (bool, string) {
		got := map[string]store.State{}
		for name := range want {
			got[name] = e.state(t, name)
		}
		return cmp.Equal(want, got), fmt.Sprintf("snapshots %v", got)
	})
	// Deletions finishing within the judge's interval of each other leave
	// the verdict to the next sweep (docs/cleanup.md, "Session outcome"):
	// Cloud Scheduler's run.
	req := httptest.NewRequest(http.MethodPost, "/scheduler/sweep", strings.NewReader("{}"))
	rec := httptest.NewRecorder()
	e.svc.Handler.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		t.Fatalf("sweep: status %d: %s", rec.Code, rec.Body.String())
	}
	if s, err := e.svc.Store.GetSession(ctx, "wave-1"); err != nil || s.Outcome != store.OutcomeCleaned {
		t.Fatalf("session after the sweep: %+v, %v; want cleaned", s, err)
	}
	for name, state := range want {
		if state == store.Deleted {
			if e.fake.Exists(e.project, name) || e.fake.SuccessfulDeletes(e.project, name) != 1 {
				t.Errorf("%s: exists=%v successful deletes=%d; want gone, deleted once", name, e.fake.Exists(e.project, name), e.fake.SuccessfulDeletes(e.project, name))
			}
		} else if !e.fake.Exists(e.project, name) || e.fake.DeleteCalls(e.project, name) != 0 {
			t.Errorf("%s (failed task): exists=%v delete calls=%d; want kept, never deleted", name, e.fake.Exists(e.project, name), e.fake.DeleteCalls(e.project, name))
		}
	}

	// The job asks the running service, as it would in production.
	st, err := r.CleanupStatus(ctx, "http://"+e.svc.Addr(), nil)
	if err != nil {
		t.Fatalf("CleanupStatus: %v", err)
	}
	if st.Session.SessionID != "wave-1" || st.Session.State != "completed" || st.Session.Outcome != reporter.OutcomeCleaned ||
		st.Session.Deleted != 3 || st.Session.Failed != 0 || st.Session.CompletedAt.IsZero() || !st.Session.Outcome.Final() {
		t.Errorf("status session %+v; want wave-1 completed, cleaned, 3 deleted, 0 failed", st.Session)
	}
	if st.Counts["deleted"] != 3 || st.Counts["retained"] != 2 || st.Counts["active"] != 0 {
		t.Errorf("status counts %v; want deleted 3, retained 2, active 0", st.Counts)
	}
	if _, err := reporter.Status(ctx, nil, "http://"+e.svc.Addr(), "no-such-session"); !errors.Is(err, reporter.ErrSessionNotFound) {
		t.Errorf("status of an unknown session: %v, want ErrSessionNotFound", err)
	}
}

// cmdResult is what a run of the command gives a shell: stdout, the message
// main prints and the exit code.
type cmdResult struct {
	stdout string
	err    error
	code   int
}

// runPublish runs `snapsweep publish args...` with the given environment
// and standard input, as main would.
func runPublish(t *testing.T, vars map[string]string, stdin string, args ...string) cmdResult {
	t.Helper()
	lookup := func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
	root := &cobra.Command{Use: "snapsweep", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(publishCommand(ops.Deps{Lookup: lookup}))
	var out, errOut bytes.Buffer
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	res := cmdResult{stdout: out.String(), err: err}
	var ce *ops.ConfigError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		res.code = 2
	default:
		res.code = 1
	}
	return res
}

// pullSetup creates the events topic and a pull subscription on it in a
// project of the test's own, and returns the project and a client.
func pullSetup(t *testing.T, createTopic bool) (string, *pubsub.Client, string) {
	t.Helper()
	emulators.Require(t, emulators.PubSub)
	ctx := context.Background()
	project := emulators.ProjectID(t)
	ps, err := pubsub.NewClient(ctx, project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	if !createTopic {
		return project, ps, ""
	}
	topic := "projects/" + project + "/topics/migration-events"
	if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	sub := "projects/" + project + "/subscriptions/check"
	if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	return project, ps, sub
}

// printedLines decodes the command's output lines.
func printedLines(t *testing.T, stdout string) []published {
	t.Helper()
	var out []published
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if line == "" {
			continue
		}
		var p published
		if err := json.Unmarshal([]byte(line), &p); err != nil || p.ID == "" || p.Type == "" || p.MessageID == "" {
			t.Errorf("output line %q is not {id,type,messageId}", line)
		}
		out = append(out, p)
	}
	return out
}

// TestPublishCommandEvents: every event subcommand publishes the event its
// flags describe, prints it with the message id, and exits 0.
func TestPublishCommandEvents(t *testing.T) {
	t.Parallel()
	project, ps, sub := pullSetup(t, true)
	vars := map[string]string{"GOOGLE_CLOUD_PROJECT": project}
	at := "2025-06-01T10:00:00Z"
	runs := [][]string{
		{"publish", "session-started", "--session", "wave-7", "--id", "e1", "--time", at},
		{"publish", "task-started", "--session", "wave-7", "--task", "vm-1", "--id", "e2", "--time", at},
		{"publish", "snapshot-created", "--session", "wave-7", "--task", "vm-1", "--snapshot", "snap-1",
			"--source-disk", "disk-1", "--retention", "72h", "--snapshot-id", "4862391045337619302", "--id", "e3", "--time", at},
		{"publish", "snapshot-deleted", "--session", "wave-7", "--task", "vm-1", "--snapshot", "snap-0",
			"--snapshot-project", "other-project", "--snapshot-id", "18446744073709551615", "--id", "e4", "--time", at},
		{"publish", "task-completed", "--session", "wave-7", "--task", "vm-1", "--id", "e5", "--time", at},
		{"publish", "task-failed", "--session", "wave-7", "--task", "vm-2", "--error", "disk attach timed out", "--id", "e6", "--time", at},
		{"publish", "--project", project, "session-completed", "--session", "wave-7", "--id", "e7", "--time", at},
	}
	printed := map[string]published{}
	for _, args := range runs {
		res := runPublish(t, vars, "", args...)
		if res.code != 0 {
			t.Fatalf("%v: exit %d: %v", args, res.code, res.err)
		}
		lines := printedLines(t, res.stdout)
		if len(lines) != 1 {
			t.Fatalf("%v printed %d lines, want 1:\n%s", args, len(lines), res.stdout)
		}
		printed[lines[0].ID] = lines[0]
	}
	// An event with a generated id and time.
	before := time.Now().Add(-time.Second)
	res := runPublish(t, vars, "", "publish", "task-started", "--session", "wave-7", "--task", "vm-3")
	if res.code != 0 {
		t.Fatalf("exit %d: %v", res.code, res.err)
	}
	gen := printedLines(t, res.stdout)[0]
	printed[gen.ID] = gen

	msgs := opstest.Receive(t, ps, sub, 8, 30*time.Second)
	tm, _ := time.Parse(time.RFC3339, at)
	ev := func(id string, typ events.Type, task string, snap *events.SnapshotRef, reason string) events.Event {
		return events.Event{ID: id, Type: typ, Time: tm, SessionID: "wave-7", TaskID: task, Snapshot: snap, Error: reason}
	}
	want := map[string]events.Event{
		"e1": ev("e1", events.SessionStarted, "", nil, ""),
		"e2": ev("e2", events.TaskStarted, "vm-1", nil, ""),
		"e3": ev("e3", events.SnapshotCreated, "vm-1", &events.SnapshotRef{Project: project, Name: "snap-1", SourceDisk: "disk-1", Retention: "72h", ID: "4862391045337619302"}, ""),
		"e4": ev("e4", events.SnapshotDeleted, "vm-1", &events.SnapshotRef{Project: "other-project", Name: "snap-0", ID: "18446744073709551615"}, ""),
		"e5": ev("e5", events.TaskCompleted, "vm-1", nil, ""),
		"e6": ev("e6", events.TaskFailed, "vm-2", nil, "disk attach timed out"),
		"e7": ev("e7", events.SessionCompleted, "", nil, ""),
	}
	got := map[string]events.Event{}
	for _, m := range msgs {
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("published data does not decode: %v\n%s", err, m.Data)
		}
		if p := printed[e.ID]; p.MessageID != m.ID || p.Type != e.Type {
			t.Errorf("printed %+v for message %s of type %s", p, m.ID, e.Type)
		}
		if diff := cmp.Diff(map[string]string{"type": string(e.Type), "sessionId": "wave-7"}, m.Attributes); diff != "" {
			t.Errorf("%s attributes (-want +got):\n%s", e.ID, diff)
		}
		if e.ID == gen.ID {
			if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(e.ID) || e.Time.Before(before) || e.Time.After(time.Now()) {
				t.Errorf("generated event %+v: want a UUID and the current time", e)
			}
			continue
		}
		got[e.ID] = e
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published events (-want +got):\n%s", diff)
	}
	if len(msgs) != 8 {
		t.Errorf("received %d messages, want 8", len(msgs))
	}
}

// TestPublishCommandStdin: JSON lines on standard input are published as
// they are, through `publish -` and `publish --stdin`.
func TestPublishCommandStdin(t *testing.T) {
	t.Parallel()
	project, ps, sub := pullSetup(t, true)
	// No GOOGLE_CLOUD_PROJECT: the full topic name says where.
	topic := "projects/" + project + "/topics/migration-events"
	lines := []string{
		`{"id":"s1","type":"snapshot.created","time":"2025-06-01T10:00:00Z","sessionId":"wave-8","taskId":"vm-1","snapshot":{"project":"` + project + `","name":"snap-1","retention":"24h"}}`,
		``,
		`{"id":"s2","type":"task.completed","time":"2025-06-01T10:05:00.5+02:00","sessionId":"wave-8","taskId":"vm-1","comment":"unknown fields are fine"}`,
		`  {"id":"s3","type":"task.failed","time":"2025-06-01T10:06:00Z","sessionId":"wave-8","taskId":"vm-2","error":"boom"}  `,
	}
	res := runPublish(t, nil, strings.Join(lines, "\n")+"\n", "publish", "--topic", topic, "-")
	if res.code != 0 {
		t.Fatalf("publish -: exit %d: %v", res.code, res.err)
	}
	res2 := runPublish(t, nil, `{"id":"s4","type":"session.completed","time":"2025-06-01T11:00:00Z","sessionId":"wave-8"}`, "publish", "--stdin", "--topic", topic)
	if res2.code != 0 {
		t.Fatalf("publish --stdin: exit %d: %v", res2.code, res2.err)
	}
	printed := append(printedLines(t, res.stdout), printedLines(t, res2.stdout)...)
	if got := len(printed); got != 4 {
		t.Fatalf("printed %d lines, want 4:\n%s%s", got, res.stdout, res2.stdout)
	}
	for i, p := range printed {
		if want := fmt.Sprintf("s%d", i+1); p.ID != want {
			t.Errorf("line %d printed id %s, want %s (input order)", i+1, p.ID, want)
		}
	}
	want := map[string]events.Event{}
	for _, l := range append(lines, `{"id":"s4","type":"session.completed","time":"2025-06-01T11:00:00Z","sessionId":"wave-8"}`) {
		if strings.TrimSpace(l) == "" {
			continue
		}
		e, err := events.Decode([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		want[e.ID] = e
	}
	got := map[string]events.Event{}
	for _, m := range opstest.Receive(t, ps, sub, 4, 30*time.Second) {
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("published data does not decode: %v\n%s", err, m.Data)
		}
		got[e.ID] = e
		if m.Attributes["type"] != string(e.Type) || m.Attributes["sessionId"] != "wave-8" {
			t.Errorf("%s attributes %v", e.ID, m.Attributes)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published events (-want +got):\n%s", diff)
	}
}

// TestPublishCommandInvalidInput: bad flags or a bad line exit 2 with a
// message naming the problem, and nothing is published.
func TestPublishCommandInvalidInput(t *testing.T) {
	t.Parallel()
	project, ps, sub := pullSetup(t, true)
	vars := map[string]string{"GOOGLE_CLOUD_PROJECT": project}
	good := `{"id":"g1","type":"task.started","time":"2025-06-01T10:00:00Z","sessionId":"wave-9","taskId":"vm-1"}`
	cases := []struct {
		name  string
		vars  map[string]string
		stdin string
		args  []string
		want  []string // parts of the message
	}{
		{"missing flags", vars, "", []string{"publish", "snapshot-created", "--session", "wave-9"},
			[]string{"snapshot-created", "missing --task, --snapshot"}},
		{"missing session", vars, "", []string{"publish", "session-completed"}, []string{"missing --session"}},
		{"invalid session", vars, "", []string{"publish", "task-completed", "--session", "Wave 9", "--task", "vm-1"},
			[]string{"--session: must match"}},
		{"invalid snapshot name", vars, "", []string{"publish", "snapshot-created", "--session", "wave-9", "--task", "vm-1", "--snapshot", "Snap_1"},
			[]string{"--snapshot: must match"}},
		{"invalid snapshot project", vars, "", []string{"publish", "snapshot-deleted", "--session", "wave-9", "--task", "vm-1", "--snapshot", "snap-1", "--snapshot-project", "P"},
			[]string{"--snapshot-project: must be a GCP project id"}},
		{"invalid retention", vars, "", []string{"publish", "snapshot-created", "--session", "wave-9", "--task", "vm-1", "--snapshot", "snap-1", "--retention", "3 days"},
			[]string{"--retention", "Go duration"}},
		{"invalid time", vars, "", []string{"publish", "task-started", "--session", "wave-9", "--task", "vm-1", "--time", "yesterday"},
			[]string{`--time "yesterday"`}},
		{"invalid snapshot id", vars, "", []string{"publish", "snapshot-created", "--session", "wave-9", "--task", "vm-1", "--snapshot", "snap-1", "--snapshot-id", "0042"},
			[]string{"--snapshot-id: must be Compute's numeric snapshot id", `not "0042"`}},
		{"snapshot id of another event", vars, "", []string{"publish", "task-completed", "--session", "wave-9", "--task", "vm-1", "--snapshot-id", "42"},
			[]string{"unknown flag: --snapshot-id"}},
		{"unknown flag", vars, "", []string{"publish", "task-completed", "--sesion", "wave-9"}, []string{"unknown flag: --sesion"}},
		{"flag of another event", vars, "", []string{"publish", "task-completed", "--session", "wave-9", "--task", "vm-1", "--error", "x"},
			[]string{"unknown flag: --error"}},
		{"unknown event", vars, "", []string{"publish", "snapshot-creatd"}, []string{`unknown event "snapshot-creatd"`, "did you mean snapshot-created?"}},
		{"extra argument", vars, "", []string{"publish", "task-completed", "--session", "wave-9", "--task", "vm-1", "now"}, []string{"unexpected arguments"}},
		{"no event", vars, "", []string{"publish"}, []string{"name an event"}},
		{"no project", nil, "", []string{"publish", "session-started", "--session", "wave-9"}, []string{"no project", "GOOGLE_CLOUD_PROJECT"}},
		{"snapshot without any project", nil, "", []string{"publish", "snapshot-created", "--session", "wave-9", "--task", "t", "--snapshot", "s"},
			[]string{"missing --snapshot-project"}},
		{"bad lines", vars, strings.Join([]string{
			good,
			`{"id":"b1","type":"task.started"`,
			`{"id":"b2","type":"task.completed","time":"2025-06-01T10:00:00Z","sessionId":"wave-9"}`,
			`{"id":"g1","type":"task.completed","time":"2025-06-01T10:00:00Z","sessionId":"wave-9","taskId":"vm-1"}`,
			`{"id":"b3","type":"snapshot.exploded","time":"2025-06-01T10:00:00Z","sessionId":"wave-9"}`,
			good[:len(good)-1] + `,"x":1}`,
		}, "\n"), []string{"publish", "-"},
			[]string{"5 invalid line(s), nothing published", "line 2: bad_json", "line 3: missing_field: taskId", `line 4: id "g1" is already used on line 1`,
				"line 5: unknown_type", `line 6: id "g1"`}},
		{"bad line after blank lines", vars, "\n\n" + `{"id":"x","type":"task.started","time":"2025-13-01T10:00:00Z","sessionId":"wave-9","taskId":"vm-1"}` + "\n",
			[]string{"publish", "--stdin"}, []string{"line 3: invalid_field: time"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := runPublish(t, tc.vars, tc.stdin, tc.args...)
			if res.code != 2 {
				t.Fatalf("exit %d (%v), want 2", res.code, res.err)
			}
			for _, w := range tc.want {
				if !strings.Contains(res.err.Error(), w) {
					t.Errorf("message does not say %q:\n%v", w, res.err)
				}
			}
			if res.stdout != "" {
				t.Errorf("printed %q; want nothing", res.stdout)
			}
		})
	}
	if msgs := opstest.Receive(t, ps, sub, 1, 3*time.Second); len(msgs) != 0 {
		t.Errorf("invalid input published %d messages, first: %s", len(msgs), msgs[0].Data)
	}
}

// TestPublishCommandNamesEveryBadFlag: one message names every missing or
// invalid flag, each with the service's rule, so a shell job is fixed in
// one go. Invalid flags never reach Pub/Sub, so no emulator is needed.
func TestPublishCommandNamesEveryBadFlag(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"GOOGLE_CLOUD_PROJECT": "host-project"}
	cases := []struct {
		name string
		vars map[string]string
		args []string
		want []string // the problems, in order
	}{
		{"every snapshot flag invalid", vars,
			[]string{"publish", "snapshot-created", "--session", "Wave 9", "--task", "vm\t1", "--snapshot", "Snap_1", "--snapshot-project", "P",
				"--source-disk", strings.Repeat("d", events.MaxSourceDiskLen+1), "--retention", "3 days", "--snapshot-id", "-7", "--time", "yesterday"},
			[]string{`--time "yesterday"`, "--session: must match", "--task: must contain printable characters only", "--snapshot-project: must be a GCP project id",
				"--snapshot: must match", "--source-disk: must be at most 1024 characters", "--retention: must be a Go duration",
				`--snapshot-id: must be Compute's numeric snapshot id, a decimal integer from 1 to 18446744073709551615 without leading zeros (as a JSON string or number), not "-7"`}},
		{"missing and invalid together", nil,
			[]string{"publish", "snapshot-deleted", "--snapshot-id", "18446744073709551616"},
			[]string{"missing --session, --task, --snapshot", "missing --snapshot-project (or --project, or GOOGLE_CLOUD_PROJECT)",
				`--snapshot-id: must be Compute's numeric snapshot id`}},
		{"snapshot id zero", vars,
			[]string{"publish", "snapshot-created", "--session", "wave-9", "--task", "vm-1", "--snapshot", "snap-1", "--snapshot-id", "0"},
			[]string{`--snapshot-id: must be Compute's numeric snapshot id`}},
		{"snapshot id empty is absent", vars,
			[]string{"publish", "snapshot-created", "--session", "Wave", "--task", "vm-1", "--snapshot", "snap-1", "--snapshot-id", ""},
			[]string{"--session: must match"}},
		{"snapshot id with spaces", vars,
			[]string{"publish", "snapshot-created", "--session", "wave-9", "--task", "vm-1", "--snapshot", "snap-1", "--snapshot-id", " 42"},
			[]string{`not " 42"`}},
		{"snapshot id as an exponent", vars,
			[]string{"publish", "snapshot-deleted", "--session", "wave-9", "--task", "vm-1", "--snapshot", "snap-1", "--snapshot-id", "4.2e1"},
			[]string{`not "4.2e1"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			res := runPublish(t, tc.vars, "", tc.args...)
			if res.code != 2 {
				t.Fatalf("exit %d (%v), want 2", res.code, res.err)
			}
			msg := res.err.Error()
			_, problems, ok := strings.Cut(msg, ": ")
			if !ok {
				t.Fatalf("message %q names no command", msg)
			}
			got := strings.Split(problems, "; ")
			if len(got) != len(tc.want) {
				t.Errorf("%d problems, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if i < len(got) && !strings.HasPrefix(got[i], w) && !strings.Contains(got[i], w) {
					t.Errorf("problem %d is %q, want it to say %q", i+1, got[i], w)
				}
			}
		})
	}
}

// TestPublishCommandPublishFailure: a topic that does not exist is a
// publish failure (exit 1) naming the event.
func TestPublishCommandPublishFailure(t *testing.T) {
	t.Parallel()
	project, _, _ := pullSetup(t, false)
	res := runPublish(t, map[string]string{"GOOGLE_CLOUD_PROJECT": project}, "",
		"publish", "task-completed", "--session", "wave-1", "--task", "vm-1", "--id", "ev-404")
	if res.code != 1 {
		t.Fatalf("exit %d (%v), want 1", res.code, res.err)
	}
	for _, w := range []string{"1 of 1 events not published", "task.completed event ev-404", "NotFound"} {
		if !strings.Contains(res.err.Error(), w) {
			t.Errorf("message does not say %q:\n%v", w, res.err)
		}
	}
	if res.stdout != "" {
		t.Errorf("printed %q for a failed publish", res.stdout)
	}
}

// TestPublishCommandRegistered: the binary has the command.
func TestPublishCommandRegistered(t *testing.T) {
	t.Parallel()
	cmd, _, err := rootCommand().Find([]string{"publish", "snapshot-created"})
	if err != nil || cmd.Name() != "snapshot-created" {
		t.Fatalf("snapsweep publish snapshot-created: %v, %v", cmd, err)
	}
}
