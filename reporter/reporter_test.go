package reporter_test

import (
	"context"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"math"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/reporter"
)

const project = "job-project"

// fakePubSub starts an in-process Pub/Sub server and returns it with a
// client connected to it; withTopic creates the default topic.
func fakePubSub(t *testing.T, withTopic bool) (*pstest.Server, *pubsub.Client) {
	t.Helper()
	srv := pstest.NewServer()
	t.Cleanup(func() { srv.Close() })
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client, err := pubsub.NewClient(context.Background(), project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	if withTopic {
		if _, err := client.TopicAdminClient.CreateTopic(context.Background(), &pubsubpb.Topic{Name: "projects/" + project + "/topics/" + reporter.DefaultTopic}); err != nil {
			t.Fatal(err)
		}
	}
	return srv, client
}

// counter returns an id generator "ev-1", "ev-2", ….
func counter() func() string {
	var mu sync.Mutex
	n := 0
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return "ev-" + strconv.Itoa(n)
	}
}

var clock = time.Date(2025, 3, 4, 5, 6, 7, 800, time.FixedZone("CET", 3600))

func newReporter(t *testing.T, client *pubsub.Client, opts ...reporter.Option) *reporter.Reporter {
	t.Helper()
	opts = append([]reporter.Option{reporter.WithClock(func() time.Time { return clock }), reporter.WithIDFunc(counter())}, opts...)
	r, err := reporter.New(client, "", "sess-1", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(context.Background()) })
	return r
}

// TestReporterPublishesEvents: every method publishes the event the
// contract describes, decodable by the service's own Decode, with the type
// and session as attributes.
func TestReporterPublishesEvents(t *testing.T) {
	t.Parallel()
	srv, client := fakePubSub(t, true)
	r := newReporter(t, client)
	ctx := context.Background()
	snap := events.SnapshotRef{Project: "disk-project", Name: "snap-1", SourceDisk: "zones/europe-west1-b/disks/d1", Retention: "48h"}
	calls := []func() error{
		func() error { return r.SessionStarted(ctx) },
		func() error { return r.TaskStarted(ctx, "vm/1") },
		func() error { return r.SnapshotCreated(ctx, "vm/1", snap) },
		func() error { return r.RegisterSnapshot(ctx, "vm/1", "disk-project", "snap-2") },
		func() error {
			return r.SnapshotDeleted(ctx, "vm/1", events.SnapshotRef{Project: "disk-project", Name: "snap-2"})
		},
		func() error { return r.TaskCompleted(ctx, "vm/1") },
		func() error { return r.TaskFailed(ctx, "vm-2", "disk attach timed out") },
		func() error { return r.SessionCompleted(ctx) },
		func() error { return r.RegisterSnapshotWithID(ctx, "vm-3", "disk-project", "snap-3", math.MaxUint64) },
		func() error {
			return r.SnapshotDeleted(ctx, "vm-3", events.SnapshotRef{Project: "disk-project", Name: "snap-3", ID: "18446744073709551615"})
		},
	}
	for i, call := range calls {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	at := clock.UTC()
	ev := func(id string, typ events.Type, task string, s *events.SnapshotRef, reason string) events.Event {
		return events.Event{ID: id, Type: typ, Time: at, SessionID: "sess-1", TaskID: task, Snapshot: s, Error: reason}
	}
	want := map[string]events.Event{
		"ev-1":  ev("ev-1", events.SessionStarted, "", nil, ""),
		"ev-2":  ev("ev-2", events.TaskStarted, "vm/1", nil, ""),
		"ev-3":  ev("ev-3", events.SnapshotCreated, "vm/1", &snap, ""),
		"ev-4":  ev("ev-4", events.SnapshotCreated, "vm/1", &events.SnapshotRef{Project: "disk-project", Name: "snap-2"}, ""),
		"ev-5":  ev("ev-5", events.SnapshotDeleted, "vm/1", &events.SnapshotRef{Project: "disk-project", Name: "snap-2"}, ""),
		"ev-6":  ev("ev-6", events.TaskCompleted, "vm/1", nil, ""),
		"ev-7":  ev("ev-7", events.TaskFailed, "vm-2", nil, "disk attach timed out"),
		"ev-8":  ev("ev-8", events.SessionCompleted, "", nil, ""),
		"ev-9":  ev("ev-9", events.SnapshotCreated, "vm-3", &events.SnapshotRef{Project: "disk-project", Name: "snap-3", ID: "18446744073709551615"}, ""),
		"ev-10": ev("ev-10", events.SnapshotDeleted, "vm-3", &events.SnapshotRef{Project: "disk-project", Name: "snap-3", ID: "18446744073709551615"}, ""),
	}
	got := map[string]events.Event{}
	for _, m := range srv.Messages() {
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Errorf("published message does not decode: %v\n%s", err, m.Data)
			continue
		}
		got[e.ID] = e
		// The id goes out as a string, as Compute renders it: a JSON
		// number above 2^53 would be rounded by many consumers.
		if e.Snapshot != nil && e.Snapshot.ID != "" && !strings.Contains(string(m.Data), `"id":"`+e.Snapshot.ID+`"`) {
			t.Errorf("%s: snapshot id %s not sent as a JSON string: %s", e.ID, e.Snapshot.ID, m.Data)
		}
		wantAttrs := map[string]string{"type": string(e.Type), "sessionId": "sess-1"}
		if diff := cmp.Diff(wantAttrs, m.Attributes); diff != "" {
			t.Errorf("%s attributes (-want +got):\n%s", e.ID, diff)
		}
		if want := "projects/" + project + "/topics/migration-events"; m.Topic != want {
			t.Errorf("%s published to %s, want %s", e.ID, m.Topic, want)
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("published events (-want +got):\n%s", diff)
	}
}

// TestReporterDefaultIDs: without WithIDFunc every event gets a distinct
// id the service accepts, and the time is the event's, in UTC.
func TestReporterDefaultIDs(t *testing.T) {
	t.Parallel()
	srv, client := fakePubSub(t, true)
	r, err := reporter.New(client, "migration-events", "sess-1")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	before := time.Now()
	const n = 50
	for i := range n {
		if err := r.TaskStarted(ctx, fmt.Sprintf("vm-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ids := map[string]bool{}
	for _, m := range srv.Messages() {
		e, err := events.Decode(m.Data)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		ids[e.ID] = true
		if e.Time.Before(before.Add(-time.Second)) || e.Time.Location() != time.UTC {
			t.Errorf("event %s time %v: want now, in UTC", e.ID, e.Time)
		}
	}
	if len(ids) != n {
		t.Errorf("%d distinct ids over %d events", len(ids), n)
	}
}

// TestReporterValidatesBeforePublish: an event the service would reject is
// returned as its *events.RejectError at once, and nothing is published.
func TestReporterValidatesBeforePublish(t *testing.T) {
	t.Parallel()
	srv, client := fakePubSub(t, true)
	ctx := context.Background()
	cases := []struct {
		name  string
		call  func(r *reporter.Reporter) error
		field string
	}{
		{"empty task id", func(r *reporter.Reporter) error { return r.TaskCompleted(ctx, "") }, "taskId"},
		{"task id with newline", func(r *reporter.Reporter) error { return r.TaskStarted(ctx, "vm\n1") }, "taskId"},
		{"task id too long", func(r *reporter.Reporter) error { return r.TaskFailed(ctx, strings.Repeat("t", 257), "x") }, "taskId"},
		{"error too long", func(r *reporter.Reporter) error {
			return r.TaskFailed(ctx, "t", strings.Repeat("x", events.MaxErrorLen+1))
		}, "error"},
		{"snapshot name", func(r *reporter.Reporter) error { return r.RegisterSnapshot(ctx, "t", "disk-project", "Snap_1") }, "snapshot.name"},
		{"snapshot project missing", func(r *reporter.Reporter) error { return r.RegisterSnapshot(ctx, "t", "", "snap-1") }, "snapshot.project"},
		{"retention", func(r *reporter.Reporter) error {
			return r.SnapshotCreated(ctx, "t", events.SnapshotRef{Project: "disk-project", Name: "snap-1", Retention: "3 days"})
		}, "snapshot.retention"},
		{"snapshot id zero", func(r *reporter.Reporter) error {
			return r.RegisterSnapshotWithID(ctx, "t", "disk-project", "snap-1", 0)
		}, "snapshot.id"},
		{"snapshot id not canonical", func(r *reporter.Reporter) error {
			return r.SnapshotCreated(ctx, "t", events.SnapshotRef{Project: "disk-project", Name: "snap-1", ID: "0042"})
		}, "snapshot.id"},
		{"deleted snapshot id not a number", func(r *reporter.Reporter) error {
			return r.SnapshotDeleted(ctx, "t", events.SnapshotRef{Project: "disk-project", Name: "snap-1", ID: "snap-1"})
		}, "snapshot.id"},
		{"deleted without task", func(r *reporter.Reporter) error {
			return r.SnapshotDeleted(ctx, "", events.SnapshotRef{Project: "disk-project", Name: "snap-1"})
		}, "taskId"},
		{"bad generated id", func(*reporter.Reporter) error {
			r, err := reporter.New(client, "", "sess-1", reporter.WithIDFunc(func() string { return "" }))
			if err != nil {
				return err
			}
			return r.SessionStarted(ctx)
		}, "id"},
		{"zero clock", func(*reporter.Reporter) error {
			r, err := reporter.New(client, "", "sess-1", reporter.WithClock(func() time.Time { return time.Time{} }))
			if err != nil {
				return err
			}
			return r.SessionStarted(ctx)
		}, "time"},
	}
	r := newReporter(t, client)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(r)
			var rej *events.RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("error %v, want a *events.RejectError", err)
			}
			if rej.Field != tc.field {
				t.Errorf("rejected field %q (%v), want %q", rej.Field, rej, tc.field)
			}
		})
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	if msgs := srv.Messages(); len(msgs) != 0 {
		t.Errorf("%d messages published for invalid events, want none; first: %s", len(msgs), msgs[0].Data)
	}
}

func TestReporterNew(t *testing.T) {
	t.Parallel()
	_, client := fakePubSub(t, false)
	cases := []struct {
		name    string
		client  *pubsub.Client
		session string
		opts    []reporter.Option
		wantErr string // a part of the message; "" for success
	}{
		{"valid", client, "sess-1", nil, ""},
		{"valid with label key", client, "s", []reporter.Option{reporter.WithLabelKey("snapsweep_owner")}, ""},
		{"no client", nil, "sess-1", nil, "client"},
		{"empty session", client, "", nil, "session id"},
		{"upper-case session", client, "Sess-1", nil, "session id"},
		{"session too long", client, strings.Repeat("s", 64), nil, "session id"},
		{"bad label key", client, "sess-1", []reporter.Option{reporter.WithLabelKey("Migration Session")}, "label key"},
		{"nil clock", client, "sess-1", []reporter.Option{reporter.WithClock(nil)}, "clock"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, err := reporter.New(tc.client, "", tc.session, tc.opts...)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if r.SessionID() != tc.session {
					t.Errorf("SessionID() = %q", r.SessionID())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New error %v, want one about %q", err, tc.wantErr)
			}
		})
	}
}

// TestReporterFlushReportsFailedPublishes: when the topic does not exist
// every publish fails, and Flush names each failed event once.
func TestReporterFlushReportsFailedPublishes(t *testing.T) {
	t.Parallel()
	_, client := fakePubSub(t, false)
	r := newReporter(t, client)
	ctx := context.Background()
	for _, call := range []func() error{
		func() error { return r.SessionStarted(ctx) },
		func() error { return r.RegisterSnapshot(ctx, "vm-1", "disk-project", "snap-1") },
		func() error { return r.TaskCompleted(ctx, "vm-1") },
	} {
		if err := call(); err != nil {
			t.Fatalf("report: %v", err)
		}
	}
	err := r.Flush(ctx)
	if err == nil {
		t.Fatal("Flush returned nil; want the three failed publishes")
	}
	for _, want := range []string{"session.started event ev-1", "snapshot.created event ev-2", "task.completed event ev-3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Flush error does not name %q:\n%v", want, err)
		}
	}
	var failed []events.Event
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *reporter.PublishError
		if !errors.As(e, &pe) {
			t.Fatalf("%v is not a *reporter.PublishError", e)
		}
		if status.Code(pe.Err) != codes.NotFound {
			t.Errorf("%s: cause %v, want NotFound", pe.Event.ID, pe.Err)
		}
		failed = append(failed, pe.Event)
	}
	if len(failed) != 3 || failed[1].Snapshot == nil || failed[1].Snapshot.Name != "snap-1" {
		t.Errorf("failed events %+v; want the three reported, with their content for a retry", failed)
	}
	if err := r.Flush(ctx); err != nil {
		t.Errorf("second Flush: %v; want nil (failures are reported once)", err)
	}
}

// TestReporterFlushKeepsUnsettledPublishes: a Flush whose context ends
// first says so, and a later Flush still waits for those events.
func TestReporterFlushKeepsUnsettledPublishes(t *testing.T) {
	t.Parallel()
	srv, client := fakePubSub(t, true)
	srv.SetAutoPublishResponse(false)
	r := newReporter(t, client)
	ctx := context.Background()
	if err := r.SessionStarted(ctx); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := r.Flush(cancelled); !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "1 events still publishing") {
		t.Errorf("Flush with an ended context: %v; want context.Canceled, 1 event still publishing", err)
	}
	srv.AddPublishResponse(&pubsubpb.PublishResponse{MessageIds: []string{"m-1"}}, nil)
	if err := r.Flush(ctx); err != nil {
		t.Errorf("Flush after the server answered: %v", err)
	}
}

// TestReporterClose: Close publishes what is outstanding, later reports
// fail with ErrClosed, and a second Close is a no-op.
func TestReporterClose(t *testing.T) {
	t.Parallel()
	srv, client := fakePubSub(t, true)
	r := newReporter(t, client)
	ctx := context.Background()
	if err := r.TaskStarted(ctx, "vm-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := len(srv.Messages()); n != 1 {
		t.Errorf("%d messages after Close, want 1", n)
	}
	if err := r.TaskCompleted(ctx, "vm-1"); !errors.Is(err, reporter.ErrClosed) {
		t.Errorf("report after Close: %v, want ErrClosed", err)
	}
	if err := r.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestReporterLabels: the label a job puts on its snapshots is the session
// id under the service's label key.
func TestReporterLabels(t *testing.T) {
	t.Parallel()
	_, client := fakePubSub(t, false)
	r := newReporter(t, client)
	if diff := cmp.Diff(map[string]string{"migration-session": "sess-1"}, r.Labels()); diff != "" {
		t.Errorf("Labels (-want +got):\n%s", diff)
	}
	r.Labels()["migration-session"] = "changed"
	if got := r.Labels()["migration-session"]; got != "sess-1" {
		t.Errorf("Labels shares its map with the caller: %q", got)
	}
	r2 := newReporter(t, client, reporter.WithLabelKey("snapsweep-owner"))
	if diff := cmp.Diff(map[string]string{"snapsweep-owner": "sess-1"}, r2.Labels()); diff != "" {
		t.Errorf("Labels with WithLabelKey (-want +got):\n%s", diff)
	}
}

// serviceAnswer is GET /status?session=sess-1 as the service encodes it
// today: store.Session has no JSON tags, so its fields are Go names.
const serviceAnswer = `{
  "session": {
    "SessionID": "sess-1",
    "State": "completed",
    "StartedAt": "2025-03-04T05:00:00Z",
    "CompletedAt": "2025-03-04T06:00:00Z",
    "Outcome": "cleaned",
    "OutcomeAt": "2025-03-04T06:01:00Z",
    "Deleted": 4,
    "Failed": 0,
    "UpdatedAt": "2025-03-04T06:01:00Z"
  },
  "counts": {"active": 0, "retained": 2, "cleanup_pending": 0, "deleting": 0, "deleted": 4, "failed": 0, "refused": 0, "held": 0}
}`

// camelAnswer is the same with JSON names, should the record get tags.
const camelAnswer = `{"session":{"sessionId":"sess-1","state":"completed","startedAt":"2025-03-04T05:00:00Z","completedAt":"2025-03-04T06:00:00Z","outcome":"cleaned","outcomeAt":"2025-03-04T06:01:00Z","deleted":4,"updatedAt":"2025-03-04T06:01:00Z"},
 "counts":{"retained":2,"deleted":4}}`

func TestReporterStatus(t *testing.T) {
	t.Parallel()
	ts := func(s string) time.Time {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return t
	}
	want := reporter.SessionStatus{
		Session: reporter.Session{
			SessionID: "sess-1", State: "completed", Outcome: reporter.OutcomeCleaned, Deleted: 4,
			StartedAt: ts("2025-03-04T05:00:00Z"), CompletedAt: ts("2025-03-04T06:00:00Z"),
			OutcomeAt: ts("2025-03-04T06:01:00Z"), UpdatedAt: ts("2025-03-04T06:01:00Z"),
		},
	}
	full := want
	full.Counts = map[string]int64{"active": 0, "retained": 2, "cleanup_pending": 0, "deleting": 0, "deleted": 4, "failed": 0, "refused": 0, "held": 0}
	camel := want
	camel.Counts = map[string]int64{"retained": 2, "deleted": 4}

	cases := []struct {
		name     string
		code     int
		body     string
		want     reporter.SessionStatus
		wantErr  string
		notFound bool
	}{
		{name: "service answer", code: 200, body: serviceAnswer, want: full},
		{name: "camel-case answer", code: 200, body: camelAnswer, want: camel},
		{name: "unknown session", code: 404, body: `{"error":"not found"}`, wantErr: "session not found", notFound: true},
		{name: "server error", code: 503, body: `{"error":"registry unavailable: deadline exceeded"}`, wantErr: "503 Service Unavailable: registry unavailable"},
		{name: "not JSON", code: 200, body: `<html>`, wantErr: "decode answer"},
		{name: "all sessions instead of one", code: 200, body: `{"counts":{},"sessions":[]}`, wantErr: "no session record"},
	}
	_, client := fakePubSub(t, false)
	r := newReporter(t, client)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			urls := make(chan string, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				urls <- r.Method + " " + r.URL.String()
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.code)
				fmt.Fprint(w, tc.body)
			}))
			defer srv.Close()
			got, err := r.CleanupStatus(context.Background(), srv.URL+"/", srv.Client())
			if gotURL := <-urls; gotURL != "GET /status?session=sess-1" {
				t.Errorf("request %q, want GET /status?session=sess-1", gotURL)
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if errors.Is(err, reporter.ErrSessionNotFound) != tc.notFound {
					t.Errorf("errors.Is(err, ErrSessionNotFound) = %v, want %v", !tc.notFound, tc.notFound)
				}
				return
			}
			if err != nil {
				t.Fatalf("CleanupStatus: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("status (-want +got):\n%s", diff)
			}
			if !got.Session.Outcome.Final() {
				t.Errorf("outcome %q not final", got.Session.Outcome)
			}
		})
	}
}

func TestReporterStatusURL(t *testing.T) {
	t.Parallel()
	urls := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		urls <- r.URL.String()
		fmt.Fprint(w, camelAnswer)
	}))
	defer srv.Close()
	if _, err := reporter.Status(context.Background(), nil, srv.URL+"/snapsweep", "sess_1-a"); err != nil {
		t.Fatal(err)
	}
	if got, want := <-urls, "/snapsweep/status?session=sess_1-a"; got != want {
		t.Errorf("request URL %q, want %q", got, want)
	}
	for _, bad := range []struct{ url, session string }{{"snapsweep.example", "s"}, {"://x", "s"}, {srv.URL, "Bad Session"}} {
		if _, err := reporter.Status(context.Background(), nil, bad.url, bad.session); err == nil {
			t.Errorf("Status(%q, %q) succeeded; want an error", bad.url, bad.session)
		}
	}
}

func TestOutcomeFinal(t *testing.T) {
	t.Parallel()
	for o, want := range map[reporter.Outcome]bool{
		"": false, reporter.OutcomePending: false, reporter.OutcomeCleaned: true,
		reporter.OutcomeCleanedWithErrors: true, reporter.OutcomeCleanupFailed: true,
	} {
		if o.Final() != want {
			t.Errorf("%q.Final() = %v, want %v", o, !want, want)
		}
	}
}

// TestReporterImports keeps the package light for jobs: the standard
// library, events, status and the Pub/Sub client, nothing of the service;
// and status (the /status wire) and cost/figures, which it brings along,
// import only events and each other.
func TestReporterImports(t *testing.T) {
	t.Parallel()
	wire := map[string]bool{
		"github.com/snapsweep/snapsweep/events":       true,
		"github.com/snapsweep/snapsweep/cost/figures": true,
	}
	for _, pkg := range []struct {
		glob    string
		allowed map[string]bool
	}{
		{"*.go", map[string]bool{
			"cloud.google.com/go/pubsub/v2":         true,
			"github.com/google/uuid":                true,
			"github.com/snapsweep/snapsweep/events": true,
			"github.com/snapsweep/snapsweep/status": true,
		}},
		{"../status/*.go", wire},
		{"../cost/figures/*.go", wire},
	} {
		files, err := filepath.Glob(pkg.glob)
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: %v (%d files)", pkg.glob, err, len(files))
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			parsed, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range parsed.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				std := !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
				if !std && !pkg.allowed[path] {
					t.Errorf("%s imports %s; what a job imports must not pull in the service", f, path)
				}
			}
		}
	}
}
