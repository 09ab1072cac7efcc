package cleanup_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-retry"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

const label = "migration-session"

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	fake   *gcefake.Fake
	store  *store.Memory
	engine *cleanup.Engine
	now    time.Time
}

func newFixture(t *testing.T, fopts gcefake.Options, mod func(*cleanup.EngineConfig)) *fixture {
	t.Helper()
	f := &fixture{fake: gcefake.New(fopts), store: store.NewMemory(), now: t0.Add(time.Hour)}
	client, err := gce.New(context.Background(), gce.Config{Endpoint: "http://compute.test"},
		option.WithHTTPClient(f.fake.Client()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	cfg := cleanup.EngineConfig{
		Store: f.store, Compute: client, SessionLabel: label,
		Policy: lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{"proj-a", "proj-b"})},
		Rate:   1000, Concurrency: 16, OpWait: 5 * time.Second, Owner: "test",
		Now: func() time.Time { return f.now },
	}
	if mod != nil {
		mod(&cfg)
	}
	f.engine = cleanup.NewEngine(cfg)
	return f
}

// register puts a snapshot of a task in the given task state into the
// registry and (unless labels is nil) into the fake Compute API.
func (f *fixture) register(t *testing.T, project, name, session string, task store.TaskState, st store.State, labels map[string]string) events.CleanupMessage {
	t.Helper()
	ctx := context.Background()
	tk := store.TaskKey{SessionID: session, TaskID: "task-" + name}
	if task != "" {
		if _, err := f.store.UpdateTask(ctx, tk, func(*store.Task) (*store.Task, error) {
			return &store.Task{State: task, StateTime: t0}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	rec := &store.Snapshot{Project: project, Name: name, SessionID: session, TaskID: tk.TaskID, State: st,
		CreatedAt: t0, RegisteredAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(72 * time.Hour)}
	if labels != nil {
		// The registry knows the Compute id, as from an event that sent it.
		rec.ComputeID = strconv.FormatUint(f.fake.AddSnapshot(project, name, labels), 10)
	}
	if err := f.store.PutSnapshot(ctx, rec); err != nil {
		t.Fatal(err)
	}
	return events.CleanupMessage{Project: project, Name: name, SessionID: session, TaskID: tk.TaskID,
		Reason: events.ReasonTaskCompleted, RequestedAt: t0}
}

func TestEngineOwnershipAndPolicy(t *testing.T) {
	t.Parallel()
	own := func(s string) map[string]string { return map[string]string{label: s} }
	tests := []struct {
		name      string
		task      store.TaskState
		state     store.State
		labels    map[string]string
		dryRun    bool
		now       time.Duration // after t0
		wantRes   cleanup.Result
		wantState store.State
		wantGone  bool
		wantCalls int // Compute calls that touch the snapshot
	}{
		{name: "succeeded task is deleted", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"),
			wantRes: cleanup.ResultDeleted, wantState: store.Deleted, wantGone: true, wantCalls: 2},
		{name: "label missing is refused", task: store.TaskSucceeded, state: store.CleanupPending, labels: map[string]string{"other": "x"},
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantCalls: 1},
		{name: "label of another session is refused", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s2"),
			wantRes: cleanup.ResultRefused, wantState: store.Refused, wantCalls: 1},
		{name: "running task is kept", task: store.TaskRunning, state: store.CleanupPending, labels: own("s1"),
			wantRes: cleanup.ResultSkipped, wantState: store.Active},
		{name: "unknown task is kept until expiry", state: store.Active, labels: own("s1"),
			wantRes: cleanup.ResultSkipped, wantState: store.Active},
		{name: "running task past its TTL is deleted", task: store.TaskRunning, state: store.Active, labels: own("s1"), now: 73 * time.Hour,
			wantRes: cleanup.ResultDeleted, wantState: store.Deleted, wantGone: true, wantCalls: 2},
		{name: "failed task inside retention is kept", task: store.TaskFailed, state: store.Retained, labels: own("s1"), now: 100 * time.Hour,
			wantRes: cleanup.ResultSkipped, wantState: store.Retained},
		{name: "failed task after retention is deleted", task: store.TaskFailed, state: store.Retained, labels: own("s1"), now: 169 * time.Hour,
			wantRes: cleanup.ResultDeleted, wantState: store.Deleted, wantGone: true, wantCalls: 2},
		{name: "held is never deleted", task: store.TaskSucceeded, state: store.Held, labels: own("s1"),
			wantRes: cleanup.ResultSkipped, wantState: store.Held},
		{name: "refused stays refused", task: store.TaskSucceeded, state: store.Refused, labels: own("s1"),
			wantRes: cleanup.ResultSkipped, wantState: store.Refused},
		{name: "already gone counts as deleted", task: store.TaskSucceeded, state: store.CleanupPending,
			wantRes: cleanup.ResultAlreadyGone, wantState: store.Deleted, wantGone: true, wantCalls: 1},
		{name: "dry run deletes nothing", task: store.TaskSucceeded, state: store.CleanupPending, labels: own("s1"), dryRun: true,
			wantRes: cleanup.ResultDryRun, wantState: store.Active, wantCalls: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, gcefake.Options{}, func(c *cleanup.EngineConfig) { c.DryRun = tc.dryRun })
			f.now = t0.Add(tc.now)
			msg := f.register(t, "proj-a", "snap-1", "s1", tc.task, tc.state, tc.labels)
			out, err := f.engine.Handle(context.Background(), msg)
			if err != nil {
				t.Fatalf("Handle: %v", err)
			}
			if out.Result != tc.wantRes {
				t.Errorf("result = %s (%s), want %s", out.Result, out.Why, tc.wantRes)
			}
			rec, err := f.store.GetSnapshot(context.Background(), store.Key{Project: "proj-a", Name: "snap-1"})
			if err != nil {
				t.Fatal(err)
			}
			if rec.State != tc.wantState {
				t.Errorf("registry state = %s, want %s", rec.State, tc.wantState)
			}
			if tc.labels != nil && f.fake.Exists("proj-a", "snap-1") == tc.wantGone {
				t.Errorf("snapshot exists = %v, want %v", !tc.wantGone, !tc.wantGone)
			}
			if got := len(f.fake.Calls()); got < tc.wantCalls || (tc.wantCalls == 0 && got != 0) {
				t.Errorf("compute calls = %d, want %d", got, tc.wantCalls)
			}
			if !tc.wantGone && f.fake.DeleteCalls("proj-a", "snap-1") != 0 {
				t.Errorf("a protected snapshot got %d delete calls", f.fake.DeleteCalls("proj-a", "snap-1"))
			}
		})
	}
}

func TestEngineLabelChangedAfterRegistration(t *testing.T) {
	t.Parallel()
	f := newFixture(t, gcefake.Options{}, nil)
	msg := f.register(t, "proj-a", "snap-1", "s1", store.TaskSucceeded, store.CleanupPending, map[string]string{label: "s1"})
	f.fake.SetLabels("proj-a", "snap-1", map[string]string{label: "someone-else"})
	out, err := f.engine.Handle(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if out.Result != cleanup.ResultRefused || f.fake.DeleteCalls("proj-a", "snap-1") != 0 {
		t.Errorf("result %s with %d delete calls; want refused and none", out.Result, f.fake.DeleteCalls("proj-a", "snap-1"))
	}
}

func TestEngineSecondDeliveryWhileLeased(t *testing.T) {
	t.Parallel()
	f := newFixture(t, gcefake.Options{}, nil)
	msg := f.register(t, "proj-a", "snap-1", "s1", store.TaskSucceeded, store.CleanupPending, map[string]string{label: "s1"})
	// Another instance holds the lease.
	if _, err := f.store.UpdateSnapshot(context.Background(), store.Key{Project: "proj-a", Name: "snap-1"}, store.TaskKey{},
		func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			next := *cur
			next.State, next.LeaseUntil, next.LeaseOwner, next.Attempt = store.Deleting, f.now.Add(time.Minute), "other", 1
			return &next, nil
		}); err != nil {
		t.Fatal(err)
	}
	_, err := f.engine.Handle(context.Background(), msg)
	if !errors.Is(err, cleanup.ErrRetryLater) {
		t.Fatalf("Handle during another's lease: got %v, want ErrRetryLater", err)
	}
	if n := len(f.fake.Calls()); n != 0 {
		t.Errorf("compute calls during another's lease = %d, want 0", n)
	}
	// After the lease runs out the redelivery takes over and finishes.
	f.now = f.now.Add(2 * time.Minute)
	out, err := f.engine.Handle(context.Background(), msg)
	if err != nil || out.Result != cleanup.ResultDeleted {
		t.Fatalf("after lease expiry: %v, %v; want deleted", out, err)
	}
}

func TestEnginePermanentFailureIsRecorded(t *testing.T) {
	t.Parallel()
	f := newFixture(t, gcefake.Options{}, nil)
	msg := f.register(t, "proj-a", "snap-1", "s1", store.TaskSucceeded, store.CleanupPending, map[string]string{label: "s1"})
	f.fake.FailNext("proj-a", "snap-1", 2, http.StatusForbidden, "forbidden")
	out, err := f.engine.Handle(context.Background(), msg)
	if err != nil {
		t.Fatalf("a permanent failure is acknowledged, got %v", err)
	}
	rec, _ := f.store.GetSnapshot(context.Background(), store.Key{Project: msg.Project, Name: msg.Name})
	if out.Result != cleanup.ResultFailed || rec.State != store.Failed || rec.ErrorClass != string(gce.ClassPermanent) {
		t.Errorf("got result %s, state %s, class %q; want failed/failed/permanent", out.Result, rec.State, rec.ErrorClass)
	}
}

// TestEngineUnderFaults drives many snapshots through 30 % 503s, a delete
// quota of 50 a minute, and in-use errors, redelivering every message the
// engine asks to retry 5 s later (as Pub/Sub does with a retry policy), and
// checks that every snapshot ends deleted with at most one successful
// delete call each. It runs in a synctest bubble: the quota minutes pass in
// fake time.
func TestEngineUnderFaults(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const n = 120
		f := newFixture(t, gcefake.Options{Quota: map[string]int{gcefake.GroupWrites: 50}, Seed: 7}, func(c *cleanup.EngineConfig) {
			c.Now = time.Now
			c.Budget = 3 * time.Second
			c.Backoff = func() retry.Backoff {
				return retry.WithMaxRetries(6, retry.WithJitterPercent(20, retry.NewExponential(5*time.Millisecond)))
			}
			c.BreakerMinRequests = 1 << 30 // this test is about retries, not the breaker
		})
		var msgs []events.CleanupMessage
		for i := range n {
			name := fmt.Sprintf("snap-%03d", i)
			msgs = append(msgs, f.register(t, "proj-a", name, "s1", store.TaskSucceeded, store.CleanupPending, map[string]string{label: "s1"}))
			if i%10 == 0 {
				f.fake.InUse("proj-a", name, 2)
			}
		}
		f.fake.SetFailureRate(http.StatusServiceUnavailable, "backendError", 0.3)

		pending := msgs
		retries := 0
		for round := 0; len(pending) > 0; round++ {
			if round > 200 {
				t.Fatalf("%d snapshots still not deleted after 200 redelivery rounds", len(pending))
			}
			if round > 0 {
				time.Sleep(5 * time.Second) // the redelivery delay
			}
			var mu sync.Mutex
			var next []events.CleanupMessage
			var wg sync.WaitGroup
			for _, m := range pending {
				wg.Go(func() {
					out, err := f.engine.Handle(context.Background(), m)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case errors.Is(err, cleanup.ErrRetryLater):
						next = append(next, m)
					case err != nil:
						t.Errorf("%s: unexpected error %v", m.Name, err)
					case out.Result == cleanup.ResultPending:
						next = append(next, m)
					case out.Result != cleanup.ResultDeleted && out.Result != cleanup.ResultAlreadyGone:
						t.Errorf("%s: result %s (%s)", m.Name, out.Result, out.Why)
					}
				})
			}
			wg.Wait()
			retries += len(next)
			pending = next
		}
		for _, m := range msgs {
			if f.fake.Exists(m.Project, m.Name) {
				t.Errorf("%s still exists", m.Name)
			}
			if got := f.fake.SuccessfulDeletes(m.Project, m.Name); got > 1 {
				t.Errorf("%s deleted %d times", m.Name, got)
			}
			rec, _ := f.store.GetSnapshot(context.Background(), store.Key{Project: m.Project, Name: m.Name})
			if rec.State != store.Deleted {
				t.Errorf("%s: registry state %s, want deleted", m.Name, rec.State)
			}
		}
		st := f.fake.Stats()
		if st.QuotaErrors == 0 {
			t.Errorf("the quota never refused a call (%+v): the test did not test it", st)
		}
		t.Logf("redeliveries: %d; fake stats: %+v", retries, st)
	})
}

// TestBreakerOpensAndCloses runs in a synctest bubble: the breaker's
// timeout and the retry backoff pass in fake time, no wall-clock sleeps.
func TestBreakerOpensAndCloses(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var states []string
		var mu sync.Mutex
		f := newFixture(t, gcefake.Options{}, func(c *cleanup.EngineConfig) {
			c.Now = time.Now
			c.BreakerMinRequests = 3
			c.BreakerTimeout = 30 * time.Second
			c.Backoff = func() retry.Backoff { return retry.WithMaxRetries(1, retry.NewConstant(time.Second)) }
			c.OnBreakerChange = func(from, to string) { mu.Lock(); states = append(states, to); mu.Unlock() }
		})
		f.fake.Outage(true)
		var msgs []events.CleanupMessage
		for i := range 4 {
			msgs = append(msgs, f.register(t, "proj-a", fmt.Sprintf("snap-%d", i), "s1", store.TaskSucceeded, store.CleanupPending, map[string]string{label: "s1"}))
		}
		for _, m := range msgs[:2] {
			if _, err := f.engine.Handle(context.Background(), m); !errors.Is(err, cleanup.ErrRetryLater) {
				t.Fatalf("during outage: got %v, want ErrRetryLater", err)
			}
		}
		if got := f.engine.BreakerState(); got != "open" {
			t.Fatalf("breaker after a sustained outage = %s, want open", got)
		}
		calls := len(f.fake.Calls())
		if _, err := f.engine.Handle(context.Background(), msgs[2]); !errors.Is(err, cleanup.ErrRetryLater) {
			t.Fatalf("with the breaker open: got %v, want ErrRetryLater", err)
		}
		if got := len(f.fake.Calls()); got != calls {
			t.Errorf("an open breaker made %d compute calls, want none", got-calls)
		}
		f.fake.Outage(false)
		time.Sleep(31 * time.Second) // fake time: the breaker's timeout passes
		for _, m := range msgs {
			out, err := f.engine.Handle(context.Background(), m)
			if err != nil || out.Result != cleanup.ResultDeleted {
				t.Fatalf("after recovery %s: %v %v", m.Name, out, err)
			}
		}
		if got := f.engine.BreakerState(); got != "closed" {
			t.Errorf("breaker after recovery = %s, want closed", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if diff := cmp.Diff([]string{"open", "half-open", "closed"}, states); diff != "" {
			t.Errorf("breaker transitions (-want +got):\n%s", diff)
		}
	})
}

// TestBreakerTripsOnRatioNotOnSickness runs in a synctest bubble with the
// default breaker settings: 16 deliveries at a time against a Compute API
// that fails 30 % of its calls must never open the breaker (a run of
// failures across concurrent calls is not an outage), while a 100 % outage
// opens it; while open, a delivery waits a bounded time inside its request
// and then asks for a redelivery without calling Compute; one that arrives
// shortly before the breaker's timeout waits for the half-open probes and
// succeeds; the probes close it.
func TestBreakerTripsOnRatioNotOnSickness(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var states []string
		var opened time.Time
		f := newFixture(t, gcefake.Options{Seed: 3}, func(c *cleanup.EngineConfig) {
			c.Now = time.Now
			c.OnBreakerChange = func(from, to string) {
				mu.Lock()
				defer mu.Unlock()
				states = append(states, to)
				if to == "open" {
					opened = time.Now()
				}
			}
		})
		transitions := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), states...) }
		n := 0
		next := func() events.CleanupMessage {
			n++
			return f.register(t, "proj-a", fmt.Sprintf("snap-%d", n), "s1", store.TaskSucceeded, store.CleanupPending, map[string]string{label: "s1"})
		}

		// 30 % of all calls fail: every delivery ends deleted, the breaker
		// stays closed.
		f.fake.SetFailureRate(http.StatusServiceUnavailable, "backendError", 0.3)
		var msgs []events.CleanupMessage
		for range 160 {
			msgs = append(msgs, next())
		}
		var wg sync.WaitGroup
		work := make(chan events.CleanupMessage)
		var failed []string
		for range 16 {
			wg.Go(func() {
				for m := range work {
					out, err := f.engine.Handle(context.Background(), m)
					// A redelivery request is allowed (a budget can run
					// out under 30 % errors); a breaker refusal is not.
					if (err != nil && !errors.Is(err, cleanup.ErrRetryLater)) || strings.Contains(fmt.Sprint(err), "breaker") ||
						(err == nil && out.Result != cleanup.ResultDeleted && out.Result != cleanup.ResultPending) {
						mu.Lock()
						failed = append(failed, fmt.Sprintf("%s: %s %v", m.Name, out.Result, err))
						mu.Unlock()
					}
				}
			})
		}
		for _, m := range msgs {
			work <- m
		}
		close(work)
		wg.Wait()
		calls := len(f.fake.Calls())
		if calls < 300 {
			t.Fatalf("only %d Compute calls under 30 %% errors: too few to judge the breaker", calls)
		}
		if len(failed) > 0 {
			t.Errorf("under 30 %% errors %d of %d deliveries were not finished, e.g. %s", len(failed), len(msgs), failed[0])
		}
		if got := transitions(); len(got) != 0 || f.engine.BreakerState() != "closed" {
			t.Fatalf("under 30 %% errors over %d calls the breaker went %v, want it closed throughout", calls, got)
		}

		// A full outage under the same load opens it.
		f.fake.SetFailureRate(0, "", 0)
		f.fake.Outage(true)
		for range 16 {
			m := next()
			wg.Go(func() {
				if _, err := f.engine.Handle(context.Background(), m); !errors.Is(err, cleanup.ErrRetryLater) {
					t.Errorf("during the outage: got %v, want ErrRetryLater", err)
				}
			})
		}
		wg.Wait()
		if got := f.engine.BreakerState(); got != "open" {
			t.Fatalf("breaker after an outage = %s (transitions %v), want open", got, transitions())
		}

		// Open: a delivery waits a bounded time, makes no Compute call, and
		// asks for a redelivery.
		calls = len(f.fake.Calls())
		start := time.Now()
		if _, err := f.engine.Handle(context.Background(), next()); !errors.Is(err, cleanup.ErrRetryLater) {
			t.Fatalf("with the breaker open: got %v, want ErrRetryLater", err)
		}
		if waited := time.Since(start); waited < 2*time.Second || waited > 5*time.Second {
			t.Errorf("with the breaker open a delivery was held %s, want the bounded wait (3s)", waited)
		}
		if got := len(f.fake.Calls()); got != calls {
			t.Errorf("an open breaker made %d Compute calls, want none", got-calls)
		}

		// The API is back; a delivery arriving 2s before the breaker's
		// timeout waits for the half-open probe inside its request.
		f.fake.Outage(false)
		time.Sleep(time.Until(opened.Add(13 * time.Second)))
		if got := f.engine.BreakerState(); got != "open" {
			t.Fatalf("breaker 13s after opening = %s, want still open", got)
		}
		out, err := f.engine.Handle(context.Background(), next())
		if err != nil || out.Result != cleanup.ResultDeleted {
			t.Fatalf("delivery during the last seconds of the open state: %v %v, want deleted after a short wait", out, err)
		}
		for range 2 {
			if out, err := f.engine.Handle(context.Background(), next()); err != nil || out.Result != cleanup.ResultDeleted {
				t.Fatalf("after recovery: %v %v", out, err)
			}
		}
		if got := f.engine.BreakerState(); got != "closed" {
			t.Errorf("breaker after successful probes = %s, want closed", got)
		}
		if diff := cmp.Diff([]string{"open", "half-open", "closed"}, transitions()); diff != "" {
			t.Errorf("breaker transitions (-want +got):\n%s", diff)
		}
	})
}

// TestDuplicateDeliveriesAreAnsweredWithoutANack: duplicates of one
// cleanup message delivered at once (Pub/Sub delivers at least once) all
// look, one takes the lease first. The others look again inside their
// request instead of answering 503: a nack shrinks Pub/Sub's push window
// for every message of the subscription. The snapshot is deleted once.
func TestDuplicateDeliveriesAreAnsweredWithoutANack(t *testing.T) {
	t.Parallel()
	f := newFixture(t, gcefake.Options{}, nil)
	msg := f.register(t, "proj-a", "dup", "s1", store.TaskSucceeded, store.CleanupPending, map[string]string{label: "s1"})
	const n = 8
	errs := make(chan error, n)
	start := make(chan struct{})
	for range n {
		go func() {
			<-start
			_, err := f.engine.Handle(context.Background(), msg)
			errs <- err
		}()
	}
	close(start)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("a duplicate delivery was not answered 2xx: %v", err)
		}
	}
	if got := f.fake.SuccessfulDeletes("proj-a", "dup"); got != 1 {
		t.Errorf("successful deletes = %d, want 1", got)
	}
}
