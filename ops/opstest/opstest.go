// Package opstest runs snapsweep command lines in tests: a project of the
// test's own on the Firestore and Pub/Sub emulators (seeded through the
// store), the cleanup topic with a pull subscription, and the Compute fake.
// The tests of ops drive the operator commands with it, those of package
// main the whole command tree.
//
// It is test support only: nothing outside _test files imports it, and it
// decides nothing; the commands under test do.
package opstest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/store"
)

// SessionLabel is the service's default ownership label.
const SessionLabel = "migration-session"

// Env is one test's project on the emulators and its Compute fake.
type Env struct {
	Project string
	// Vars is the commands' environment.
	Vars map[string]string
	Reg  *store.Firestore
	PS   *pubsub.Client
	// Sub is a pull subscription on the cleanup topic.
	Sub  string
	Fake *gcefake.Fake
	// Compute is the fake's URL.
	Compute string
	// Root builds the command tree a line runs on.
	Root func(ops.Deps) *cobra.Command
}

// New prepares a project of the test's own; root builds the command tree.
// The package's TestMain must ask emulators.Main for Firestore and Pub/Sub.
func New(t *testing.T, root func(ops.Deps) *cobra.Command) *Env {
	t.Helper()
	emulators.Require(t, emulators.Firestore)
	emulators.Require(t, emulators.PubSub)
	ctx := context.Background()
	e := &Env{Project: emulators.ProjectID(t), Fake: gcefake.New(gcefake.Options{}), Root: root}
	e.Vars = map[string]string{"GOOGLE_CLOUD_PROJECT": e.Project, "USER": "tester",
		"FIRESTORE_EMULATOR_HOST": os.Getenv("FIRESTORE_EMULATOR_HOST"), "PUBSUB_EMULATOR_HOST": os.Getenv("PUBSUB_EMULATOR_HOST")}
	fs, err := firestore.NewClient(ctx, e.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	e.Reg = store.NewFirestore(fs)
	e.PS, err = pubsub.NewClient(ctx, e.Project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.PS.Close() })
	topic := "projects/" + e.Project + "/topics/snapshot-cleanup"
	if _, err := e.PS.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	e.Sub = "projects/" + e.Project + "/subscriptions/cleanup-check"
	if _, err := e.PS.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: e.Sub, Topic: topic, AckDeadlineSeconds: 30}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(e.Fake)
	t.Cleanup(srv.Close)
	e.Compute = srv.URL
	return e
}

// Result is what a command line did.
type Result struct {
	Stdout, Stderr string
	Err            error
	// Code is the exit code (ops.ExitCode).
	Code int
}

// Run runs `snapsweep args...` as main would, with the env's environment
// and no terminal.
func (e *Env) Run(t *testing.T, args ...string) Result {
	t.Helper()
	deps := ops.DefaultDeps()
	deps.Lookup = func(k string) (string, bool) { v, ok := e.Vars[k]; return v, ok }
	deps.Terminal = func(io.Writer) bool { return false }
	return Run(t, e.Root(deps), deps, args...)
}

// Run runs args on root with deps' terminal rule, as main does.
func Run(t *testing.T, root *cobra.Command, deps ops.Deps, args ...string) Result {
	t.Helper()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	err := ops.Execute(ctx, root, args, deps.Terminal)
	return Result{Stdout: out.String(), Stderr: errOut.String(), Err: err, Code: ops.ExitCode(err)}
}

// Put seeds snapshot records (project filled in).
func (e *Env) Put(t *testing.T, snaps ...store.Snapshot) {
	t.Helper()
	for _, s := range snaps {
		s.Project = e.Project
		if s.UpdatedAt.IsZero() {
			s.UpdatedAt = s.CreatedAt
		}
		s.RegisteredAt = s.CreatedAt
		if err := e.Reg.PutSnapshot(context.Background(), &s); err != nil {
			t.Fatal(err)
		}
	}
}

// Task seeds a task in state st at at.
func (e *Env) Task(t *testing.T, session, task string, st store.TaskState, at time.Time) {
	t.Helper()
	_, err := e.Reg.UpdateTask(context.Background(), store.TaskKey{SessionID: session, TaskID: task}, func(*store.Task) (*store.Task, error) {
		return &store.Task{State: st, StateTime: at, UpdatedAt: at, StartedAt: at.Add(-time.Hour)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Get reads a snapshot record of the env's project.
func (e *Env) Get(t *testing.T, name string) *store.Snapshot {
	t.Helper()
	s, err := e.Reg.GetSnapshot(context.Background(), store.Key{Project: e.Project, Name: name})
	if err != nil {
		t.Fatalf("get %s: %v", name, err)
	}
	return s
}

// Key is PROJECT/NAME of a snapshot of the env's project.
func (e *Env) Key(name string) string { return e.Project + "/" + name }

// WantCode stops the test unless r exited with code.
func WantCode(t *testing.T, what string, r Result, code int) {
	t.Helper()
	if r.Code != code {
		t.Fatalf("%s: exit code %d, want %d (err %v)\nstdout:\n%s\nstderr:\n%s", what, r.Code, code, r.Err, r.Stdout, r.Stderr)
	}
}

// Names decodes {"snapshots":[...]} and returns the names, sorted.
func Names(t *testing.T, stdout string) []string {
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

// Receive pulls from sub until it has want messages or wait has passed.
func Receive(t *testing.T, ps *pubsub.Client, sub string, want int, wait time.Duration) []*pubsub.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var mu sync.Mutex
	var got []*pubsub.Message
	err := ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
		m.Ack()
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m)
		if len(got) >= want {
			cancel()
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("receive: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	return got
}
