package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/snapsweep/snapsweep/handlers"
	"github.com/snapsweep/snapsweep/service"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/sethvargo/go-envconfig"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/store"
)

func TestMain(m *testing.M) { emulators.Main(m, emulators.Firestore, emulators.PubSub) }

const sessionLabel = "migration-session"

// env is one running service on the emulators, in a project of its own.
type env struct {
	project string
	svc     *service.Service
	fake    *gcefake.Fake
	ps      *pubsub.Client
	logs    *syncBuffer
	// shutdown ends the service's Run as SIGTERM does and returns its error.
	shutdown func() error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startEnv creates the topics, starts a service with extra settings, and
// returns it serving on a local port.
func startEnv(t testing.TB, settings map[string]string) *env {
	t.Helper()
	return startEnvWith(t, settings, service.Options{})
}

// startEnvWith is startEnv with service options (providers, clocks).
func startEnvWith(t testing.TB, settings map[string]string, opts service.Options) *env {
	t.Helper()
	emulators.Require(t, emulators.Firestore)
	emulators.Require(t, emulators.PubSub)
	ctx := context.Background()
	e := &env{project: emulators.ProjectID(t), fake: gcefake.New(gcefake.Options{Latency: 50 * time.Millisecond}), logs: &syncBuffer{}}
	fakeSrv := httptest.NewServer(e.fake)
	t.Cleanup(fakeSrv.Close)
	vars := map[string]string{
		"GOOGLE_CLOUD_PROJECT":       e.project,
		"SNAPSWEEP_COMPUTE_ENDPOINT": fakeSrv.URL,
		"SNAPSWEEP_DELETE_RATE":      "200",
	}
	for k, v := range settings {
		vars[k] = v
	}
	cfg, err := config.Load(ctx, envconfig.MapLookuper(vars))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := pubsub.NewClient(ctx, e.project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	e.ps = ps
	for _, topic := range []string{cfg.EventsTopic, cfg.CleanupTopic} {
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: e.topic(topic)}); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := service.NewLogger(e.logs, cfg)
	opts.Listener = lis
	if opts.Logger == nil {
		opts.Logger = log
	}
	svc, err := service.New(ctx, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	var once sync.Once
	var runErr error
	e.shutdown = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() {
		if err := e.shutdown(); err != nil {
			t.Errorf("service run: %v", err)
		}
		svc.Close()
	})
	return e
}

func (e *env) topic(name string) string { return "projects/" + e.project + "/topics/" + name }

// pushTo creates a push subscription from topic to the service's path.
func (e *env) pushTo(t *testing.T, topic, path string) {
	t.Helper()
	_, err := e.ps.SubscriptionAdminClient.CreateSubscription(context.Background(), &pubsubpb.Subscription{
		Name:               "projects/" + e.project + "/subscriptions/" + topic + "-push",
		Topic:              e.topic(topic),
		PushConfig:         &pubsubpb.PushConfig{PushEndpoint: "http://" + e.svc.Addr() + path},
		AckDeadlineSeconds: 60,
	})
	if err != nil {
		t.Fatalf("create push subscription: %v", err)
	}
}

func (e *env) publish(t *testing.T, topic string, data []byte) {
	t.Helper()
	p := e.ps.Publisher(e.topic(topic))
	defer p.Stop()
	if _, err := p.Publish(context.Background(), &pubsub.Message{Data: data}).Get(context.Background()); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func event(id string, typ events.Type, session, task string, at time.Time, snap *events.SnapshotRef) []byte {
	ev := events.Event{ID: id, Type: typ, Time: at, SessionID: session, TaskID: task, Snapshot: snap}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; last seen: %s", what, last)
}

func (e *env) state(t *testing.T, name string) store.State {
	t.Helper()
	rec, err := e.svc.Store.GetSnapshot(context.Background(), store.Key{Project: e.project, Name: name})
	if err != nil {
		return ""
	}
	return rec.State
}

// TestEndToEndThroughEmulatorPush: migration events published to the
// emulator are pushed to the running service, snapshots are registered,
// cleanup messages are published and pushed back, and the Compute fake
// sees exactly the deletions the rules allow.
func TestEndToEndThroughEmulatorPush(t *testing.T) {
	t.Parallel()
	e := startEnv(t, map[string]string{"SNAPSWEEP_SESSION_FAILURE_TOLERANCE": "0.05"})
	e.pushTo(t, "migration-events", "/pubsub/migration-events")
	e.pushTo(t, "snapshot-cleanup", "/pubsub/snapshot-cleanup")
	p := e.project
	own := map[string]string{sessionLabel: "s1"}
	for _, n := range []string{"ok-1", "ok-2", "fail-1", "run-1"} {
		e.fake.AddSnapshot(p, n, own)
	}
	e.fake.AddSnapshot(p, "bad-1", map[string]string{sessionLabel: "another-session"})
	e.fake.AddSnapshot("outside-project", "x-1", own)

	at := time.Now().UTC().Add(-time.Minute)
	ref := func(project, name string) *events.SnapshotRef {
		return &events.SnapshotRef{Project: project, Name: name}
	}
	stream := [][]byte{
		event("e1", events.SessionStarted, "s1", "", at, nil),
		event("e2", events.SnapshotCreated, "s1", "t-ok", at, ref(p, "ok-1")),
		event("e3", events.SnapshotCreated, "s1", "t-ok", at, ref(p, "ok-2")),
		event("e4", events.SnapshotCreated, "s1", "t-fail", at, ref(p, "fail-1")),
		event("e5", events.SnapshotCreated, "s1", "t-run", at, ref(p, "run-1")),
		event("e6", events.SnapshotCreated, "s1", "t-bad", at, ref(p, "bad-1")),
		event("e7", events.SnapshotCreated, "s1", "t-out", at, ref("outside-project", "x-1")),
		event("e8", events.TaskCompleted, "s1", "t-ok", at.Add(time.Second), nil),
		event("e9", events.TaskFailed, "s1", "t-fail", at.Add(time.Second), nil),
		event("e10", events.TaskCompleted, "s1", "t-bad", at.Add(time.Second), nil),
		[]byte(`{"id": "broken", "type": "snapshot.created"`),
	}
	for _, m := range stream {
		e.publish(t, "migration-events", m)
	}
	waitFor(t, "cleanup to finish", 60*time.Second, func() (bool, string) {
		got := fmt.Sprintf("ok-1=%s ok-2=%s bad-1=%s", e.state(t, "ok-1"), e.state(t, "ok-2"), e.state(t, "bad-1"))
		return e.state(t, "ok-1") == store.Deleted && e.state(t, "ok-2") == store.Deleted && e.state(t, "bad-1") == store.Refused, got
	})
	e.publish(t, "migration-events", event("e11", events.SessionCompleted, "s1", "", at.Add(2*time.Second), nil))
	waitFor(t, "session outcome", 30*time.Second, func() (bool, string) {
		s, err := e.svc.Store.GetSession(context.Background(), "s1")
		if err != nil {
			return false, err.Error()
		}
		return s.Outcome == store.OutcomeCleanupFailed, string(s.Outcome)
	})
	waitFor(t, "rejections recorded", 30*time.Second, func() (bool, string) {
		rej, err := e.svc.Store.ListRejected(context.Background(), 10)
		if err != nil {
			return false, err.Error()
		}
		reasons := map[string]bool{}
		for _, r := range rej {
			reasons[r.Reason] = true
		}
		return reasons[string(events.ReasonBadJSON)] && reasons[string(events.ReasonProjectNotAllowed)], fmt.Sprint(reasons)
	})

	for name, want := range map[string]store.State{"fail-1": store.Retained, "run-1": store.Active, "bad-1": store.Refused} {
		if got := e.state(t, name); got != want {
			t.Errorf("%s: state %s, want %s", name, got, want)
		}
		if !e.fake.Exists(p, name) || e.fake.DeleteCalls(p, name) != 0 {
			t.Errorf("%s must exist with no delete call (exists=%v, deletes=%d)", name, e.fake.Exists(p, name), e.fake.DeleteCalls(p, name))
		}
	}
	for _, name := range []string{"ok-1", "ok-2"} {
		if e.fake.Exists(p, name) || e.fake.SuccessfulDeletes(p, name) != 1 {
			t.Errorf("%s: exists=%v successful deletes=%d; want gone, deleted once", name, e.fake.Exists(p, name), e.fake.SuccessfulDeletes(p, name))
		}
	}
	for _, c := range e.fake.Calls() {
		if c.Project == "outside-project" {
			t.Errorf("a snapshot outside the allowlist was touched: %+v", c)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil || m["severity"] == nil || m["message"] == nil {
			t.Errorf("log line is not Cloud Logging JSON: %q", line)
		}
	}
}

// TestDryRunDeletesNothing: with SNAPSWEEP_DRY_RUN the service says what it
// would delete and the Compute fake sees no delete.
func TestDryRunDeletesNothing(t *testing.T) {
	t.Parallel()
	e := startEnv(t, map[string]string{"SNAPSWEEP_DRY_RUN": "true"})
	e.pushTo(t, "migration-events", "/pubsub/migration-events")
	e.pushTo(t, "snapshot-cleanup", "/pubsub/snapshot-cleanup")
	e.fake.AddSnapshot(e.project, "ok-1", map[string]string{sessionLabel: "s1"})
	at := time.Now().UTC()
	e.publish(t, "migration-events", event("d1", events.SnapshotCreated, "s1", "t1", at, &events.SnapshotRef{Project: e.project, Name: "ok-1"}))
	e.publish(t, "migration-events", event("d2", events.TaskCompleted, "s1", "t1", at.Add(time.Second), nil))
	waitFor(t, "dry-run verdict", 60*time.Second, func() (bool, string) {
		rec, err := e.svc.Store.GetSnapshot(context.Background(), store.Key{Project: e.project, Name: "ok-1"})
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(rec.Error, "would delete"), string(rec.State) + " " + rec.Error
	})
	if !e.fake.Exists(e.project, "ok-1") || e.fake.DeleteCalls(e.project, "ok-1") != 0 {
		t.Errorf("dry run: exists=%v deletes=%d; want kept with no delete call", e.fake.Exists(e.project, "ok-1"), e.fake.DeleteCalls(e.project, "ok-1"))
	}
	if got := e.state(t, "ok-1"); got != store.Active {
		t.Errorf("dry run left state %s, want active (nothing claiming work)", got)
	}
}

// push posts one wrapped Pub/Sub push request to the service in-process.
func push(t *testing.T, h http.Handler, path, id string, data []byte) int {
	t.Helper()
	body := handlers.NewPushEnvelope(handlers.PushMessage{Data: data, MessageID: id, PublishTime: time.Now(), Subscription: "projects/p/subscriptions/s"}).Encode()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	io.Copy(io.Discard, rec.Body)
	return rec.Code
}

func TestRejectionsAreAcknowledgedRecordedAndCounted(t *testing.T) {
	t.Parallel()
	e := startEnv(t, nil)
	h := e.svc.Handler
	at := time.Now().UTC().Format(time.RFC3339)
	cases := map[string]string{
		"bad_json":            `{"id":`,
		"unknown_type":        `{"id":"u1","type":"snapshot.exploded","time":"` + at + `","sessionId":"s1"}`,
		"missing_field":       `{"id":"m1","type":"task.completed","time":"` + at + `","sessionId":"s1"}`,
		"invalid_session":     `{"id":"i1","type":"session.started","time":"` + at + `","sessionId":"Bad Session"}`,
		"invalid_name":        `{"id":"i2","type":"snapshot.created","time":"` + at + `","sessionId":"s1","taskId":"t","snapshot":{"project":"` + e.project + `","name":"../../etc"}}`,
		"project_not_allowed": `{"id":"p1","type":"snapshot.created","time":"` + at + `","sessionId":"s1","taskId":"t","snapshot":{"project":"someone-else","name":"snap"}}`,
	}
	for id, data := range cases {
		if code := push(t, h, "/pubsub/migration-events", id, []byte(data)); code != http.StatusOK {
			t.Errorf("%s: status %d, want 200 (acknowledged)", id, code)
		}
	}
	rej, err := e.svc.Store.ListRejected(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range rej {
		got[r.MessageID] = r.Reason
	}
	want := map[string]string{"bad_json": "bad_json", "unknown_type": "unknown_type", "missing_field": "missing_field",
		"invalid_session": "invalid_field", "invalid_name": "invalid_field", "project_not_allowed": "project_not_allowed"}
	for id, reason := range want {
		if got[id] != reason {
			t.Errorf("message %s recorded with reason %q, want %q", id, got[id], reason)
		}
	}
	// An oversized body is refused with 413 and the service keeps serving.
	big := bytes.Repeat([]byte("a"), 1<<20+1)
	req := httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", bytes.NewReader(big))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: status %d, want 413", rec.Code)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("/health after bad input: %d", rec.Code)
	}
	if !strings.Contains(e.logs.String(), `"reason":"project_not_allowed"`) {
		t.Error("rejection not logged")
	}
}

// TestFirestoreUnavailableThenBack: with the registry unreachable the event
// is answered 5xx and nothing is half-written; the redelivery completes it.
func TestFirestoreUnavailableThenBack(t *testing.T) {
	t.Parallel()
	e := startEnv(t, nil)
	h := e.svc.Handler
	data := event("f1", events.SnapshotCreated, "s1", "t1", time.Now().UTC(), &events.SnapshotRef{Project: e.project, Name: "snap-f"})
	// A cancelled request context is what an unreachable Firestore looks
	// like to the handler: every call fails with a transient error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	body, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": "f1"}})
	req := httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", bytes.NewReader(body)).WithContext(ctx)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code < 500 {
		t.Fatalf("with Firestore unreachable: status %d, want 5xx", rec.Code)
	}
	if _, err := e.svc.Store.GetSnapshot(context.Background(), store.Key{Project: e.project, Name: "snap-f"}); err == nil {
		t.Error("a failed event left a half-written record")
	}
	if code := push(t, h, "/pubsub/migration-events", "f1", data); code != http.StatusOK {
		t.Fatalf("redelivery: status %d", code)
	}
	if got := e.state(t, "snap-f"); got != store.Active {
		t.Errorf("after redelivery: state %q, want active", got)
	}
}

var _ = slog.LevelInfo
