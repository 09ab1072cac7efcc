package main

// The harness of the safety regression tests (safety_test.go): one
// snapsweep service built exactly as `snapsweep serve` builds it, over the
// embedded registry, an in-process Pub/Sub (pstest) and the Compute fake,
// driven only through what the outside world can do: push migration events,
// push the cleanup messages the service published (when the test decides),
// trigger the sweep, run the operator CLI, move the clock, and shape what
// Compute answers (a gate in front of the fake that can hold a call or
// answer it with an error). Nothing here reaches into the service's
// internals, so the tests compile against the rewritten core as well.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/service"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/sethvargo/go-envconfig"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/store"
)

const (
	atkProject = "atk-proj-a" // managed project
	atkOther   = "atk-proj-b" // a second project, removed from the allowlist in some tests
	atkLabel   = "migration-session"
)

// atkClock is the settable test clock shared by the service and the fake.
type atkClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *atkClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *atkClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// atkRule shapes Compute's answer to matching requests: it can hold the
// request until released (a window for a race), and answer it with an
// error instead of passing it to the fake.
type atkRule struct {
	kind string // "get", "delete", "op" (operation read), "list"
	name string // snapshot name ("" = any); ignored for "op" and "list"
	// times is how many requests the rule applies to (<0: every one).
	times int
	// hold, when non-nil, keeps the request waiting until it is closed.
	hold chan struct{}
	// status and reason, when status != 0, are answered instead of the fake.
	status int
	reason string

	entered chan struct{} // closed when the first matching request arrives
	once    sync.Once
}

// atkGate is an http.Handler in front of the Compute fake.
type atkGate struct {
	fake  *gcefake.Fake
	mu    sync.Mutex
	rules []*atkRule
	// answered logs "kind name status" of the requests the gate answered itself.
	answered []string
}

func (g *atkGate) add(r *atkRule) *atkRule {
	r.entered = make(chan struct{})
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rules = append(g.rules, r)
	return r
}

// classify returns the kind of a Compute request and the snapshot it names.
func atkClassify(r *http.Request) (kind, name string) {
	p := r.URL.Path
	switch {
	case strings.Contains(p, "/global/operations/"):
		return "op", ""
	case strings.HasSuffix(p, "/global/snapshots"):
		return "list", ""
	case strings.Contains(p, "/global/snapshots/"):
		name = p[strings.LastIndex(p, "/")+1:]
		if r.Method == http.MethodDelete {
			return "delete", name
		}
		return "get", name
	}
	return "other", ""
}

func (g *atkGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	kind, name := atkClassify(r)
	var hit *atkRule
	g.mu.Lock()
	for _, rule := range g.rules {
		if rule.times == 0 || rule.kind != kind || (rule.name != "" && (kind == "get" || kind == "delete") && rule.name != name) {
			continue
		}
		if rule.times > 0 {
			rule.times--
		}
		hit = rule
		break
	}
	g.mu.Unlock()
	if hit == nil {
		g.fake.ServeHTTP(w, r)
		return
	}
	hit.once.Do(func() { close(hit.entered) })
	if hit.hold != nil {
		select {
		case <-hit.hold:
		case <-r.Context().Done():
			return
		}
	}
	if hit.status == 0 {
		g.fake.ServeHTTP(w, r)
		return
	}
	g.mu.Lock()
	g.answered = append(g.answered, fmt.Sprintf("%s %s %d", kind, name, hit.status))
	g.mu.Unlock()
	body, _ := json.Marshal(map[string]any{"error": map[string]any{
		"code": hit.status, "message": "atk: injected " + hit.reason,
		"errors": []map[string]any{{"domain": "global", "reason": hit.reason, "message": "atk: injected " + hit.reason}},
	}})
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(hit.status)
	w.Write(body)
}

// atkEnv is one service and the world around it.
type atkEnv struct {
	t        *testing.T
	clock    *atkClock
	fake     *gcefake.Fake
	gate     *atkGate
	endpoint string
	reg      store.Registry
	gcp      string // project of the registry and of Pub/Sub
	pss      *pstest.Server
	ps       *pubsub.Client
	vars     map[string]string
	svc      *service.Service
	reader   *sdkmetric.ManualReader
	logs     *syncBuffer

	mu      sync.Mutex
	acked   map[string]bool // pstest message ids acknowledged (2xx)
	taken   map[string]bool // message ids the test delivers itself
	nextMsg int
}

type atkOptions struct {
	// settings are extra environment variables of the service.
	settings map[string]string
	// start is the clock's start (default: an hour past the wall clock, so
	// that the engine's retry loop, which compares the policy clock with a
	// wall-clock deadline, gives a failed call up at once instead of
	// sleeping for real).
	start time.Time
	// latency is the fake's delete operation latency (by the test clock).
	latency time.Duration
	// firestore puts the registry on the Firestore emulator (a project of
	// the test's own) instead of the embedded store.
	firestore bool
}

// atkBackends runs fn once per registry backend where the store's
// behaviour matters: the embedded store and the Firestore emulator.
func atkBackends(t *testing.T, fn func(t *testing.T, firestore bool)) {
	for _, fs := range []bool{false, true} {
		name := "memory"
		if fs {
			name = "firestore"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, fs)
		})
	}
}

func newAtkEnv(t *testing.T, o atkOptions) *atkEnv {
	t.Helper()
	ctx := context.Background()
	start := o.start
	if start.IsZero() {
		start = time.Now().UTC().Truncate(time.Second).Add(time.Hour)
	}
	e := &atkEnv{t: t, clock: &atkClock{t: start}, gcp: atkProject, acked: map[string]bool{}, taken: map[string]bool{}, logs: &syncBuffer{}}
	if o.firestore {
		emulators.Require(t, emulators.Firestore)
		e.gcp = emulators.ProjectID(t)
		fs, err := firestore.NewClient(ctx, e.gcp)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		e.reg = store.NewFirestore(fs)
	} else {
		e.reg = store.NewMemory()
	}
	e.fake = gcefake.New(gcefake.Options{Now: e.clock.Now, Latency: o.latency})
	e.gate = &atkGate{fake: e.fake}
	srv := httptest.NewServer(e.gate)
	t.Cleanup(srv.Close)
	e.endpoint = srv.URL

	e.pss = pstest.NewServer()
	t.Cleanup(func() { e.pss.Close() })
	e.ps = e.pubsubClient()
	for _, topic := range []string{"migration-events", "snapshot-cleanup"} {
		if _, err := e.ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/" + e.gcp + "/topics/" + topic}); err != nil {
			t.Fatalf("create topic %s: %v", topic, err)
		}
	}
	e.vars = map[string]string{
		"GOOGLE_CLOUD_PROJECT":       e.gcp,
		"SNAPSWEEP_PROJECTS":         atkProject,
		"SNAPSWEEP_COMPUTE_ENDPOINT": e.endpoint,
		"SNAPSWEEP_DELETE_RATE":      "1000",
		"SNAPSWEEP_TELEMETRY":        "none",
		"SNAPSWEEP_LOG_LEVEL":        "debug",
		"SNAPSWEEP_ORPHAN_GRACE":     "1h",
		"SNAPSWEEP_MAX_CLOCK_SKEW":   "10m",
		"USER":                       "atk-operator",
	}
	for k, v := range o.settings {
		e.vars[k] = v
	}
	e.start(nil)
	t.Cleanup(func() {
		if t.Failed() && testing.Verbose() {
			t.Logf("service log:\n%s", e.logs.String())
		}
	})
	return e
}

// pubsubClient returns a new client of the in-process Pub/Sub.
func (e *atkEnv) pubsubClient() *pubsub.Client {
	e.t.Helper()
	conn, err := grpc.NewClient(e.pss.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	ps, err := pubsub.NewClient(context.Background(), e.gcp, option.WithGRPCConn(conn))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { ps.Close(); conn.Close() })
	return ps
}

// start (re)builds the service with the current settings plus changes, over
// the same registry, Pub/Sub and Compute: a deploy with a new configuration.
func (e *atkEnv) start(changes map[string]string) {
	e.t.Helper()
	for k, v := range changes {
		e.vars[k] = v
	}
	if e.svc != nil {
		e.svc.Close()
	}
	cfg, err := config.Load(context.Background(), envconfig.MapLookuper(e.vars))
	if err != nil {
		e.t.Fatalf("config: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { lis.Close() })
	e.reader = sdkmetric.NewManualReader()
	svc, err := service.New(context.Background(), cfg, service.Options{
		Registry: e.reg, PubSub: e.ps, ComputeHTTP: &http.Client{}, Now: e.clock.Now, Listener: lis,
		Logger: service.NewLogger(e.logs, cfg), Tracer: tracenoop.NewTracerProvider(),
		Meter: sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader)),
	})
	if err != nil {
		e.t.Fatalf("new service: %v", err)
	}
	e.svc = svc
	e.t.Cleanup(svc.Close)
}

// atkEv builds a migration event as raw JSON fields (so that fields the
// old decoder does not know can be added).
func atkEv(id, typ, session, task string, at time.Time, snap map[string]any) map[string]any {
	ev := map[string]any{"id": id, "type": typ, "time": at.UTC().Format(time.RFC3339Nano), "sessionId": session}
	if task != "" {
		ev["taskId"] = task
	}
	if snap != nil {
		ev["snapshot"] = snap
	}
	return ev
}

func atkSnap(project, name string) map[string]any {
	return map[string]any{"project": project, "name": name}
}

// post sends one wrapped Pub/Sub push request in-process.
func (e *atkEnv) post(path, messageID string, data []byte) (int, string) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{
		"message":      map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": messageID, "publishTime": time.Now().UTC()},
		"subscription": "projects/" + e.gcp + "/subscriptions/atk",
	})
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.svc.Handler.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String()
}

// send pushes a migration event under a fresh message id and returns the
// message id, the status and the body.
func (e *atkEnv) send(ev map[string]any) (string, int, string) {
	e.t.Helper()
	e.mu.Lock()
	e.nextMsg++
	id := fmt.Sprintf("atk-msg-%d", e.nextMsg)
	e.mu.Unlock()
	data, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	code, body := e.post("/pubsub/migration-events", id, data)
	return id, code, body
}

// must pushes events that must be acknowledged.
func (e *atkEnv) must(evs ...map[string]any) {
	e.t.Helper()
	for _, ev := range evs {
		if _, code, body := e.send(ev); code/100 != 2 {
			e.t.Fatalf("event %v %v: status %d, want 2xx: %s", ev["id"], ev["type"], code, body)
		}
	}
}

// atkMsg is a cleanup message the service published.
type atkMsg struct {
	id   string
	data []byte
}

func (m atkMsg) String() string { return m.id + " " + string(m.data) }

// pending returns the published cleanup messages not yet acknowledged nor
// taken by the test.
func (e *atkEnv) pending() []atkMsg {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []atkMsg
	for _, m := range e.pss.Messages() {
		if !strings.HasSuffix(m.Topic, "/snapshot-cleanup") || e.acked[m.ID] || e.taken[m.ID] {
			continue
		}
		out = append(out, atkMsg{id: m.ID, data: m.Data})
	}
	return out
}

// take hands the test the pending cleanup messages that name snapshot name;
// flush no longer delivers them.
func (e *atkEnv) take(name string) []atkMsg {
	e.t.Helper()
	var out []atkMsg
	for _, m := range e.pending() {
		var v struct{ Name string }
		_ = json.Unmarshal(m.data, &v)
		if v.Name == name {
			out = append(out, m)
		}
	}
	e.mu.Lock()
	for _, m := range out {
		e.taken[m.id] = true
	}
	e.mu.Unlock()
	return out
}

// deliver pushes one cleanup message; a 2xx acknowledges it.
func (e *atkEnv) deliver(m atkMsg) (int, string) {
	code, body := e.post("/pubsub/snapshot-cleanup", m.id, m.data)
	if code/100 == 2 {
		e.mu.Lock()
		e.acked[m.id] = true
		e.mu.Unlock()
	}
	return code, body
}

// flush plays Pub/Sub push once: every published cleanup message not yet
// acknowledged is delivered (again) once.
func (e *atkEnv) flush() {
	e.t.Helper()
	for _, m := range e.pending() {
		e.deliver(m)
	}
}

// sweep runs POST /scheduler/sweep and returns the raw report.
func (e *atkEnv) sweep() string {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/scheduler/sweep", strings.NewReader("{}"))
	rec := httptest.NewRecorder()
	e.svc.Handler.ServeHTTP(rec, req)
	if rec.Code/100 != 2 {
		e.t.Fatalf("sweep: status %d: %s", rec.Code, rec.Body.String())
	}
	return rec.Body.String()
}

// sweepAndFlush runs a sweep and delivers what it published (and what is
// still unacknowledged) once.
func (e *atkEnv) sweepAndFlush() string {
	e.t.Helper()
	rep := e.sweep()
	e.flush()
	return rep
}

// cli runs `snapsweep args...` as an operator would, against this env's
// registry, Pub/Sub and clock. It returns the exit code (0, 1 or 2) and the
// combined output.
func (e *atkEnv) cli(args ...string) (int, string) {
	e.t.Helper()
	deps := ops.DefaultDeps()
	deps.Lookup = func(k string) (string, bool) { v, ok := e.vars[k]; return v, ok }
	deps.OpenRegistry = func(context.Context, string, string, string) (store.Registry, func() error, error) {
		return e.reg, nil, nil
	}
	deps.OpenPubSub = func(context.Context, string) (*pubsub.Client, error) { return e.pubsubClient(), nil }
	deps.Now = e.clock.Now
	deps.Terminal = func(io.Writer) bool { return false }
	root := newRootCommand(deps)
	var out bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	var ce *ops.ConfigError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ce):
		return 2, out.String() + err.Error()
	default:
		return 1, out.String() + err.Error()
	}
}

// rec returns the registry's record of a snapshot (nil if there is none).
func (e *atkEnv) rec(project, name string) *store.Snapshot {
	e.t.Helper()
	r, err := e.reg.GetSnapshot(context.Background(), store.Key{Project: project, Name: name})
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		e.t.Fatalf("get %s/%s: %v", project, name, err)
	}
	return r
}

// state is the record's state as a string ("" when there is no record).
func (e *atkEnv) state(project, name string) string {
	e.t.Helper()
	if r := e.rec(project, name); r != nil {
		return string(r.State)
	}
	return ""
}

func (e *atkEnv) taskState(session, task string) string {
	e.t.Helper()
	tk, err := e.reg.GetTask(context.Background(), store.TaskKey{SessionID: session, TaskID: task})
	if err != nil {
		return "error: " + err.Error()
	}
	return string(tk.State)
}

// sessionRecords lists every record of a session (all generations).
func (e *atkEnv) sessionRecords(session string) []store.Snapshot {
	e.t.Helper()
	var out []store.Snapshot
	q := store.Query{SessionID: session, OrderByCreated: true, Limit: 500}
	for {
		p, err := e.reg.ListSnapshots(context.Background(), q)
		if err != nil {
			e.t.Fatalf("list snapshots of %s: %v", session, err)
		}
		out = append(out, p.Snapshots...)
		if p.Next == "" {
			return out
		}
		q.After = p.Next
	}
}

// calls returns the fake's log from index from on, as "method project/name".
func (e *atkEnv) calls(from int) []string {
	var out []string
	for _, c := range e.fake.Calls()[from:] {
		out = append(out, c.Method+" "+c.Project+"/"+c.Name)
	}
	return out
}

// deletesSince counts the delete calls the fake received on a snapshot
// after call index from.
func (e *atkEnv) deletesSince(from int, project, name string) int {
	n := 0
	for _, c := range e.fake.Calls()[from:] {
		if c.Method == "snapshots.delete" && c.Project == project && c.Name == name {
			n++
		}
	}
	return n
}

// mustKeep asserts the primary oracle: Compute never received a delete of
// the snapshot and it still exists.
func (e *atkEnv) mustKeep(project, name, why string) {
	e.t.Helper()
	if n := e.fake.DeleteCalls(project, name); n != 0 || !e.fake.Exists(project, name) {
		e.t.Errorf("%s/%s must be kept (%s): Compute got %d delete calls, exists=%v; registry state %q",
			project, name, why, n, e.fake.Exists(project, name), e.state(project, name))
	}
}

// own returns the ownership label of a session.
func atkOwn(session string) map[string]string { return map[string]string{atkLabel: session} }

// externalDelete deletes a snapshot in Compute behind snapsweep's back (a
// person or another tool), straight at the fake.
func (e *atkEnv) externalDelete(project, name string) {
	e.t.Helper()
	req := httptest.NewRequest(http.MethodDelete, "/compute/v1/projects/"+project+"/global/snapshots/"+name, nil)
	rec := httptest.NewRecorder()
	e.fake.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK || e.fake.Exists(project, name) {
		e.t.Fatalf("external delete of %s/%s: %d %s", project, name, rec.Code, rec.Body.String())
	}
}

// rejected returns the recorded rejections by message id.
func (e *atkEnv) rejected() map[string]string {
	e.t.Helper()
	rej, err := e.reg.ListRejected(context.Background(), 1000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rej {
		out[r.MessageID] = r.Reason
	}
	return out
}

// rejectedCount sums the snapsweep.messages.rejected counter for a reason.
func (e *atkEnv) rejectedCount(reason string) int64 {
	e.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		e.t.Fatal(err)
	}
	var n int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "snapsweep.messages.rejected" {
				continue
			}
			if sum, ok := m.Data.(metricdata.Sum[int64]); ok {
				for _, dp := range sum.DataPoints {
					if v, ok := dp.Attributes.Value("reason"); ok && v.AsString() == reason {
						n += dp.Value
					}
				}
			}
		}
	}
	return n
}

// waitClosed waits (bounded) for a channel to close.
func atkWait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// status returns GET /status.
func (e *atkEnv) status() string {
	e.t.Helper()
	rec := httptest.NewRecorder()
	e.svc.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status", nil))
	return rec.Body.String()
}

// clearRules drops every gate rule: Compute answers normally again.
func (g *atkGate) clearRules() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rules = nil
}

// reported registers a snapshot of a task the way a migration job does:
// the snapshot exists in Compute with the session's label, then the job
// reports task.started and snapshot.created (both at at).
func (e *atkEnv) reported(project, session, task, name string, at time.Time) {
	e.t.Helper()
	e.fake.AddSnapshot(project, name, atkOwn(session))
	e.must(
		atkEv("start-"+session+"-"+task+"-"+name, "task.started", session, task, at, nil),
		atkEv("created-"+project+"-"+name, "snapshot.created", session, task, at, atkSnap(project, name)),
	)
}
