package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"github.com/snapsweep/snapsweep/service"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/store"
)

// outageBound: a push whose work cannot finish is answered 5xx within it.
// The documented bound is 13 s (10 s push deadline + 3 s to record the
// outcome; docs/operations.md, from runs of these tests alone). The tests
// allow twice the 15 s: they run beside the whole suite on 2 cores,
// and what they must prove is that a push is answered while the dependency
// is still down — never held for the outage — not a timing (the figures are
// logged).
const outageBound = 30 * time.Second

// readyBound is how soon after a dependency is back /ready must say so
// (measured alone: 0.02–1.3 s; generous for a loaded suite).
const readyBound = 10 * time.Second

// pushTimed pushes one message in-process and says how long the answer took.
func pushTimed(t *testing.T, h http.Handler, path, id string, data []byte) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	code := push(t, h, path, id, data)
	return code, time.Since(start)
}

func (e *env) ready(t *testing.T) int {
	t.Helper()
	rec := httptest.NewRecorder()
	e.svc.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/ready", nil))
	return rec.Code
}

// waitReady polls /ready until it answers 200 and says how long that took.
func (e *env) waitReady(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if e.ready(t) == http.StatusOK {
			return time.Since(start)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("/ready not 200 within %s of the dependency's return", within)
	return 0
}

func cleanupData(t *testing.T, m events.CleanupMessage) []byte {
	t.Helper()
	b, err := m.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFirestoreDeadThenBack: with the Firestore emulator killed, pushes are
// answered 5xx within the bound and /ready fails; after it is back, /ready
// is 200 within seconds and the redelivery completes.
func TestFirestoreDeadThenBack(t *testing.T) {
	t.Parallel()
	fs := emulators.StartPrivate(t, emulators.Firestore)
	e := startEnv(t, map[string]string{"FIRESTORE_EMULATOR_HOST": fs.HostPort()})
	h := e.svc.Handler
	at := time.Now().UTC()
	if code := push(t, h, "/pubsub/migration-events", "d0", event("d0", events.SessionStarted, "s1", "", at, nil)); code != http.StatusOK {
		t.Fatalf("before the outage: status %d", code)
	}
	fs.Stop()
	data := event("d1", events.SnapshotCreated, "s1", "t1", at, &events.SnapshotRef{Project: e.project, Name: "snap-d"})
	code, took := pushTimed(t, h, "/pubsub/migration-events", "d1", data)
	t.Logf("Firestore dead: push answered %d in %s", code, took.Round(time.Millisecond))
	if code < 500 || took > outageBound {
		t.Errorf("with Firestore dead: status %d after %s, want 5xx within %s", code, took, outageBound)
	}
	cm := events.CleanupMessage{Project: e.project, Name: "snap-d", SessionID: "s1", TaskID: "t1", Reason: events.ReasonTaskCompleted, RequestedAt: at}
	code, took = pushTimed(t, h, "/pubsub/snapshot-cleanup", "d2", cleanupData(t, cm))
	t.Logf("Firestore dead: cleanup push answered %d in %s", code, took.Round(time.Millisecond))
	if code < 500 || took > outageBound {
		t.Errorf("cleanup with Firestore dead: status %d after %s, want 5xx within %s", code, took, outageBound)
	}
	if got := e.ready(t); got != http.StatusServiceUnavailable {
		t.Errorf("/ready with Firestore dead: %d, want 503", got)
	}
	if err := fs.Restart(); err != nil {
		t.Fatal(err)
	}
	back := e.waitReady(t, readyBound)
	t.Logf("Firestore back: /ready 200 after %s", back.Round(time.Millisecond))
	e.fake.AddSnapshot(e.project, "snap-d", map[string]string{sessionLabel: "s1"})
	if code := push(t, h, "/pubsub/migration-events", "d1", data); code != http.StatusOK {
		t.Fatalf("redelivery after recovery: status %d", code)
	}
	if got := e.state(t, "snap-d"); got != store.Active {
		t.Errorf("after redelivery: state %q, want active", got)
	}
}

// TestFirestoreStalledThenBack: with the Firestore emulator frozen
// (SIGSTOP: connections open, no answers) an event and a cleanup are
// answered 5xx within the bound; nothing is half-written, and after it
// resumes the redeliveries complete, the snapshot deleted exactly once.
func TestFirestoreStalledThenBack(t *testing.T) {
	t.Parallel()
	fs := emulators.StartPrivate(t, emulators.Firestore)
	e := startEnv(t, map[string]string{"FIRESTORE_EMULATOR_HOST": fs.HostPort()})
	h := e.svc.Handler
	at := time.Now().UTC().Add(-time.Minute)
	own := map[string]string{sessionLabel: "s1"}
	e.fake.AddSnapshot(e.project, "snap-c", own)
	e.fake.AddSnapshot(e.project, "snap-n", own)
	for i, data := range [][]byte{
		event("s0", events.SessionStarted, "s1", "", at, nil),
		event("s1", events.SnapshotCreated, "s1", "t1", at, &events.SnapshotRef{Project: e.project, Name: "snap-c"}),
		event("s2", events.TaskCompleted, "s1", "t1", at.Add(time.Second), nil),
	} {
		if code := push(t, h, "/pubsub/migration-events", string(rune('a'+i)), data); code != http.StatusOK {
			t.Fatalf("before the stall, event %d: status %d", i, code)
		}
	}
	if got := e.state(t, "snap-c"); got != store.CleanupPending {
		t.Fatalf("before the stall: state %s, want cleanup_pending", got)
	}
	fs.Freeze()
	cm := events.CleanupMessage{Project: e.project, Name: "snap-c", SessionID: "s1", TaskID: "t1", Reason: events.ReasonTaskCompleted, RequestedAt: at}
	code, took := pushTimed(t, h, "/pubsub/snapshot-cleanup", "c1", cleanupData(t, cm))
	t.Logf("Firestore stalled: cleanup push answered %d in %s", code, took.Round(time.Millisecond))
	if code < 500 || took > outageBound {
		t.Errorf("cleanup with Firestore stalled: status %d after %s, want 5xx within %s", code, took, outageBound)
	}
	ev := event("s3", events.SnapshotCreated, "s1", "t2", at, &events.SnapshotRef{Project: e.project, Name: "snap-n"})
	code, took = pushTimed(t, h, "/pubsub/migration-events", "s3", ev)
	t.Logf("Firestore stalled: event push answered %d in %s", code, took.Round(time.Millisecond))
	if code < 500 || took > outageBound {
		t.Errorf("event with Firestore stalled: status %d after %s, want 5xx within %s", code, took, outageBound)
	}
	if n := e.fake.DeleteCalls(e.project, "snap-c"); n != 0 {
		t.Errorf("a cleanup that could not claim its record made %d delete calls", n)
	}
	fs.Thaw()
	back := e.waitReady(t, readyBound)
	t.Logf("Firestore resumed: /ready 200 after %s", back.Round(time.Millisecond))
	// Nothing half-written: the record is as before the stall.
	if got := e.state(t, "snap-c"); got != store.CleanupPending {
		t.Errorf("after the stall: state %s, want cleanup_pending (unclaimed)", got)
	}
	// Pub/Sub redelivers until a 2xx: a first redelivery may still meet a
	// slow, just-thawed emulator.
	code = 0
	for i := 0; i < 5 && code != http.StatusOK; i++ {
		code = push(t, h, "/pubsub/snapshot-cleanup", "c1", cleanupData(t, cm))
	}
	if code != http.StatusOK {
		t.Errorf("cleanup redeliveries after the stall: status %d", code)
	}
	if code := push(t, h, "/pubsub/migration-events", "s3", ev); code != http.StatusOK {
		t.Errorf("event redelivery after the stall: status %d", code)
	}
	if got := e.state(t, "snap-c"); got != store.Deleted || e.fake.SuccessfulDeletes(e.project, "snap-c") != 1 {
		t.Errorf("snap-c: state %s, %d successful deletes; want deleted once", got, e.fake.SuccessfulDeletes(e.project, "snap-c"))
	}
	if got := e.state(t, "snap-n"); got != store.Active {
		t.Errorf("snap-n: state %s, want active", got)
	}
}

// TestPubSubDeadThenBack: with the Pub/Sub emulator killed, a
// task.completed (which publishes cleanups) is answered 5xx within the
// bound and its claims are rolled back; after Pub/Sub is back, /ready is
// 200 within seconds and the redelivery schedules the cleanup.
func TestPubSubDeadThenBack(t *testing.T) {
	t.Parallel()
	emulators.Require(t, emulators.Firestore)
	psEmu := emulators.StartPrivate(t, emulators.PubSub)
	ctx := context.Background()
	project := emulators.ProjectID(t)
	ps, err := pubsub.NewClient(ctx, project, append(service.ReconnectOptions(),
		option.WithEndpoint(psEmu.HostPort()), option.WithoutAuthentication(),
		option.WithGRPCDialOption(grpc.WithTransportCredentials(insecure.NewCredentials())))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ps.Close() })
	createTopic := func() {
		_, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + project + "/topics/snapshot-cleanup"})
		if err != nil {
			t.Fatalf("create topic: %v", err)
		}
	}
	createTopic()
	e := startEnvWith(t, map[string]string{"GOOGLE_CLOUD_PROJECT": project}, service.Options{PubSub: ps})
	e.project = project // the service's project, not startEnv's own
	h := e.svc.Handler
	at := time.Now().UTC().Add(-time.Minute)
	e.fake.AddSnapshot(e.project, "snap-p", map[string]string{sessionLabel: "s1"})
	for i, data := range [][]byte{
		event("p0", events.SessionStarted, "s1", "", at, nil),
		event("p1", events.SnapshotCreated, "s1", "t1", at, &events.SnapshotRef{Project: e.project, Name: "snap-p"}),
	} {
		if code := push(t, h, "/pubsub/migration-events", string(rune('a'+i)), data); code != http.StatusOK {
			t.Fatalf("before the outage, event %d: status %d", i, code)
		}
	}
	psEmu.Stop()
	done := event("p2", events.TaskCompleted, "s1", "t1", at.Add(time.Second), nil)
	code, took := pushTimed(t, h, "/pubsub/migration-events", "p2", done)
	t.Logf("Pub/Sub dead: task.completed answered %d in %s", code, took.Round(time.Millisecond))
	if code < 500 || took > outageBound {
		t.Errorf("with Pub/Sub dead: status %d after %s, want 5xx within %s", code, took, outageBound)
	}
	// The claim of the unpublished cleanup was rolled back.
	if got := e.state(t, "snap-p"); got == store.CleanupPending {
		t.Errorf("after a failed publish: state %s, want the claim rolled back", got)
	}
	if got := e.ready(t); got != http.StatusServiceUnavailable {
		t.Errorf("/ready with Pub/Sub dead: %d, want 503", got)
	}
	if err := psEmu.Restart(); err != nil {
		t.Fatal(err)
	}
	createTopic() // the emulator lost it
	back := e.waitReady(t, readyBound)
	t.Logf("Pub/Sub back: /ready 200 after %s", back.Round(time.Millisecond))
	if code := push(t, h, "/pubsub/migration-events", "p2", done); code != http.StatusOK {
		t.Fatalf("redelivery after recovery: status %d", code)
	}
	if got := e.state(t, "snap-p"); got != store.CleanupPending {
		t.Errorf("after redelivery: state %s, want cleanup_pending (cleanup published)", got)
	}
}

// TestShutdownAnswersRequestsStuckOnAStalledDependency: on SIGTERM with a
// push stuck on a frozen Firestore, the push is answered 503 before the
// server stops, within Cloud Run's 10 s grace period, and Run returns nil
// (exit 0).
func TestShutdownAnswersRequestsStuckOnAStalledDependency(t *testing.T) {
	t.Parallel()
	fs := emulators.StartPrivate(t, emulators.Firestore)
	e := startEnv(t, map[string]string{"FIRESTORE_EMULATOR_HOST": fs.HostPort()})
	at := time.Now().UTC()
	if code := push(t, e.svc.Handler, "/pubsub/migration-events", "h0", event("h0", events.SessionStarted, "s1", "", at, nil)); code != http.StatusOK {
		t.Fatalf("before the stall: status %d", code)
	}
	fs.Freeze()
	defer fs.Thaw()
	data := event("h1", events.SnapshotCreated, "s1", "t1", at, &events.SnapshotRef{Project: e.project, Name: "snap-h"})
	body, _ := json.Marshal(map[string]any{"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": "h1"}})
	codec := make(chan int, 1)
	go func() {
		resp, err := http.Post("http://"+e.svc.Addr()+"/pubsub/migration-events", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Errorf("push during shutdown got no answer: %v", err)
			codec <- 0
			return
		}
		resp.Body.Close()
		codec <- resp.StatusCode
	}()
	time.Sleep(time.Second) // the push is in flight, stuck on Firestore
	start := time.Now()
	err := e.shutdown()
	took := time.Since(start)
	code := <-codec
	t.Logf("shutdown: push answered %d, Run returned %v after %s", code, err, took.Round(time.Millisecond))
	if code != http.StatusServiceUnavailable {
		t.Errorf("push in flight at shutdown: status %d, want 503", code)
	}
	if err != nil || took > 10*time.Second {
		t.Errorf("Run after SIGTERM: %v after %s, want nil within 10s", err, took)
	}
}
