package service_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/handlers"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/service"
	"github.com/snapsweep/snapsweep/service/servicetest"
	"github.com/snapsweep/snapsweep/store"
)

// OpenFirestore is tested against the Firestore emulator; the rest runs on
// store.Memory, pstest and gcefake (servicetest).
func TestMain(m *testing.M) { emulators.Main(m, emulators.Firestore) }

const project = servicetest.Project

// TestServeThenShutDown: New listens before Run (the address is known
// at once); Run serves the handler over HTTP, and returns nil once its
// context ends, after which nothing listens.
func TestServeThenShutDown(t *testing.T) {
	t.Parallel()
	p := servicetest.New(t, nil)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Options.Listener = lis
	svc, err := service.New(context.Background(), p.Config, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()

	resp, err := http.Get("http://" + svc.Addr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"version": "v-test"`) {
		t.Errorf("GET /status: %d %s; want 200 with the version", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after its context ended: %v, want nil", err)
	}
	if c, err := net.Dial("tcp", svc.Addr()); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Run returned", svc.Addr())
	}
}

// TestComponentsShareOneRegistry: the parts NewComponents builds work on
// the one injected registry: an event pushed to the handler is what the
// status source and the sweep see.
func TestComponentsShareOneRegistry(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p := servicetest.New(t, nil)
	c, err := service.NewComponents(ctx, p.Config, p.Options)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	now := time.Now().UTC().Truncate(time.Second)
	data, err := json.Marshal(events.Event{ID: "e1", Type: events.SnapshotCreated, Time: now.Add(-time.Minute), SessionID: "s1", TaskID: "t1",
		Snapshot: &events.SnapshotRef{Project: project, Name: "snap-1"}})
	if err != nil {
		t.Fatal(err)
	}
	body := handlers.NewPushEnvelope(handlers.PushMessage{Data: data, MessageID: "m1"}).Encode()
	rec := httptest.NewRecorder()
	c.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("push: %d %s", rec.Code, rec.Body)
	}
	if _, err := p.Reg.GetSnapshot(ctx, store.Key{Project: project, Name: "snap-1"}); err != nil {
		t.Errorf("the injected registry has no record of the pushed event: %v", err)
	}
	st, err := c.Status.Session(ctx, "s1")
	if err != nil || st.Counts[string(store.Active)] != 1 {
		t.Errorf("status of s1: %+v, %v; want 1 active", st, err)
	}
	p.Fake.AddSnapshot(project, "snap-1", map[string]string{p.Config.SessionLabel: "s1"})
	rep, err := c.Sweeper.Run(ctx, true, "run-1")
	if err != nil || !rep.DryRun {
		t.Errorf("dry-run sweep: %+v, %v", rep, err)
	}
	if got := c.Engine.BreakerState(); got != "closed" {
		t.Errorf("breaker %q, want closed", got)
	}
}

// TestOpenFirestore: the emulator named by the caller is dialed (not only
// the process environment's), and the registry on it answers.
func TestOpenFirestore(t *testing.T) {
	t.Parallel()
	emulators.Require(t, emulators.Firestore)
	ctx := context.Background()
	fs, closeFS, err := service.OpenFirestore(ctx, emulators.ProjectID(t), "(default)", os.Getenv("FIRESTORE_EMULATOR_HOST"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFS()
	if err := store.NewFirestore(fs).Ping(ctx); err != nil {
		t.Errorf("ping the registry on the emulator: %v", err)
	}
}

// TestComputeTransport: a plain-http endpoint (the fake) gets no
// credentials; looking them up there would fail on a machine without any.
func TestComputeTransport(t *testing.T) {
	t.Parallel()
	rt, err := service.ComputeTransport(context.Background(), "http://127.0.0.1:1")
	if err != nil || rt != http.DefaultTransport {
		t.Errorf("ComputeTransport(http://…) = %v, %v; want http.DefaultTransport without credentials", rt, err)
	}
}
