package sweep_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/snapsweep/snapsweep/bus"
	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
	"github.com/snapsweep/snapsweep/telemetry"
)

func TestMain(m *testing.M) { emulators.Main(m, emulators.Firestore) }

const label = "migration-session"

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

type fixture struct {
	project string
	store   *store.Firestore
	fake    *gcefake.Fake
	ps      *pstest.Server
	now     time.Time
	mu      sync.Mutex
	cfg     sweep.Config
}

func (f *fixture) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }

func newFixture(t testing.TB) *fixture {
	t.Helper()
	emulators.Require(t, emulators.Firestore)
	ctx := context.Background()
	f := &fixture{project: emulators.ProjectID(t), now: t0.Add(100 * time.Hour)}
	f.fake = gcefake.New(gcefake.Options{Now: f.clock})
	fs, err := firestore.NewClient(ctx, f.project)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	f.store = store.NewFirestore(fs)

	f.ps = pstest.NewServer()
	t.Cleanup(func() { f.ps.Close() })
	conn, err := grpc.NewClient(f.ps.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	client, err := pubsub.NewClient(ctx, f.project, option.WithGRPCConn(conn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	topic := "projects/" + f.project + "/topics/snapshot-cleanup"
	if _, err := client.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
		t.Fatal(err)
	}
	pub := bus.NewPublisher(client, topic)
	t.Cleanup(pub.Stop)

	compute, err := gce.New(ctx, gce.Config{Endpoint: "http://compute.test"}, option.WithHTTPClient(f.fake.Client()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { compute.Close() })
	policy := lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{f.project})}
	f.cfg = sweep.Config{
		Store: f.store, Compute: compute, Publisher: pub, Policy: policy,
		Scheduler: &cleanup.Scheduler{Store: f.store, Publisher: pub, Policy: policy, Now: f.clock},
		Projects:  []string{f.project}, SessionLabel: label, MaxLive: 1000, MaxDeletes: 500,
		AdoptOrphans: true, Now: f.clock,
	}
	return f
}

func (f *fixture) sweeper(mod func(*sweep.Config)) *sweep.Sweeper {
	cfg := f.cfg
	if mod != nil {
		mod(&cfg)
	}
	return sweep.New(cfg)
}

// put registers a snapshot whose task is in task state, created at created.
func (f *fixture) put(t *testing.T, name string, st store.State, task store.TaskState, created time.Time) {
	t.Helper()
	ctx := context.Background()
	tk := store.TaskKey{SessionID: "s1", TaskID: "task-" + name}
	if task != "" {
		if _, err := f.store.UpdateTask(ctx, tk, func(*store.Task) (*store.Task, error) {
			return &store.Task{State: task, StateTime: created}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	s := &store.Snapshot{Project: f.project, Name: name, SessionID: "s1", TaskID: tk.TaskID, State: st,
		CreatedAt: created, RegisteredAt: created, UpdatedAt: created}
	switch st {
	case store.Retained:
		s.ExpiresAt = created.Add(168 * time.Hour)
	default:
		s.ExpiresAt = created.Add(72 * time.Hour)
	}
	// The registry knows the Compute id, as from an event that sent it.
	s.ComputeID = strconv.FormatUint(f.fake.AddSnapshot(f.project, name, map[string]string{label: "s1"}), 10)
	if err := f.store.PutSnapshot(ctx, s); err != nil {
		t.Fatal(err)
	}
}

// published returns the names in the cleanup messages sent so far.
func (f *fixture) published(t *testing.T) map[string]events.CleanupReason {
	t.Helper()
	out := map[string]events.CleanupReason{}
	for _, m := range f.ps.Messages() {
		cm, err := events.DecodeCleanup(m.Data)
		if err != nil {
			t.Fatalf("bad cleanup message: %v", err)
		}
		out[cm.Name] = cm.Reason
	}
	return out
}

func (f *fixture) states(t *testing.T) map[string]store.State {
	t.Helper()
	out := map[string]store.State{}
	q := store.Query{OrderByCreated: true}
	for {
		p, err := f.store.ListSnapshots(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range p.Snapshots {
			out[s.Name] = s.State
		}
		if p.Next == "" {
			return out
		}
		q.After = p.Next
	}
}

func TestSweepExpiredHonoursTheCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := range 20 {
		f.put(t, fmt.Sprintf("old-%02d", i), store.Active, store.TaskRunning, t0.Add(time.Duration(i)*time.Minute))
	}
	for i := range 3 {
		f.put(t, fmt.Sprintf("fresh-%d", i), store.Active, store.TaskRunning, f.now.Add(-time.Hour))
	}
	sw := f.sweeper(func(c *sweep.Config) { c.MaxDeletes = 5 })
	var scheduled []int
	for run := range 4 {
		rep, err := sw.Run(context.Background(), false, "")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Used > 5 {
			t.Errorf("run %d sent %d cleanup messages, cap is 5", run, rep.Used)
		}
		if run == 0 && (rep.Expired.Found != 20 || rep.Deferred != 15) {
			t.Errorf("first run: found %d expired, deferred %d; want 20 and 15", rep.Expired.Found, rep.Deferred)
		}
		scheduled = append(scheduled, rep.Expired.Scheduled)
	}
	if diff := cmp.Diff([]int{5, 5, 5, 5}, scheduled); diff != "" {
		t.Errorf("expired scheduled per run (-want +got):\n%s", diff)
	}
	got := f.published(t)
	if len(got) != 20 {
		t.Errorf("%d snapshots got a cleanup message, want the 20 expired", len(got))
	}
	for name, reason := range got {
		if strings.HasPrefix(name, "fresh-") || reason != events.ReasonExpired {
			t.Errorf("%s scheduled with reason %s", name, reason)
		}
	}
}

func TestSweepDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.put(t, "old", store.Active, store.TaskRunning, t0)
	f.put(t, "stuck", store.CleanupPending, store.TaskSucceeded, t0)
	f.fake.AddSnapshot(f.project, "orphan-1", map[string]string{label: "s9"})
	before := f.states(t)
	rep, err := f.sweeper(nil).Run(context.Background(), true, "")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, f.states(t)); diff != "" {
		t.Errorf("dry run changed the registry (-before +after):\n%s", diff)
	}
	if n := len(f.ps.Messages()); n != 0 {
		t.Errorf("dry run published %d messages", n)
	}
	if rep.Expired.Found != 1 || rep.Stuck.Pending != 1 || rep.Orphans.Found != 1 || rep.Orphans.Adopted != 0 {
		t.Errorf("dry run report: expired %d, stuck %d, orphans %d adopted %d; want 1, 1, 1, 0",
			rep.Expired.Found, rep.Stuck.Pending, rep.Orphans.Found, rep.Orphans.Adopted)
	}
}

func TestSweepRedrivesStuckWork(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.put(t, "pending", store.CleanupPending, store.TaskSucceeded, t0)
	f.put(t, "deleting-gone", store.Deleting, store.TaskSucceeded, t0)
	f.put(t, "deleting-there", store.Deleting, store.TaskSucceeded, t0)
	f.put(t, "recent", store.CleanupPending, store.TaskSucceeded, f.now.Add(-time.Minute))
	// The snapshot of one deleting record vanished (its delete finished
	// but the confirmation was lost).
	removeFromCompute(f, "deleting-gone")
	rep, err := f.sweeper(nil).Run(context.Background(), false, "")
	if err != nil {
		t.Fatal(err)
	}
	st := f.states(t)
	if st["deleting-gone"] != store.Deleted {
		t.Errorf("deleting record whose snapshot is gone: %s, want deleted", st["deleting-gone"])
	}
	got := f.published(t)
	if _, ok := got["pending"]; !ok {
		t.Error("stuck cleanup_pending was not re-driven")
	}
	if _, ok := got["deleting-there"]; !ok {
		t.Error("stuck deleting record whose snapshot exists was not re-driven")
	}
	if _, ok := got["recent"]; ok {
		t.Error("a recent cleanup_pending was re-driven before its lease")
	}
	if rep.Stuck.ConfirmedDeleted != 1 || rep.Stuck.Redriven != 2 {
		t.Errorf("report: confirmed %d, redriven %d; want 1, 2", rep.Stuck.ConfirmedDeleted, rep.Stuck.Redriven)
	}
}

// removeFromCompute deletes a snapshot through the fake's REST API (its
// operations finish at once with zero latency).
func removeFromCompute(f *fixture, name string) {
	req := httptest.NewRequest(http.MethodDelete, "/compute/v1/projects/"+f.project+"/global/snapshots/"+name, nil)
	f.fake.ServeHTTP(httptest.NewRecorder(), req)
}

func TestSweepAdoptsOrReportsOrphans(t *testing.T) {
	t.Parallel()
	for _, adopt := range []bool{true, false} {
		t.Run(fmt.Sprintf("adopt=%v", adopt), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.put(t, "known", store.Active, store.TaskRunning, f.now)
			if _, err := f.store.CreateSession(context.Background(), &store.Session{SessionID: "s7", State: store.SessionRunning, StartedAt: t0}); err != nil {
				t.Fatal(err)
			}
			// Older than the grace period (1h), of a known session: adopted.
			now := f.now
			f.mu.Lock()
			f.now = now.Add(-2 * time.Hour)
			f.mu.Unlock()
			f.fake.AddSnapshot(f.project, "orphan-1", map[string]string{label: "s7"})
			f.fake.AddSnapshot(f.project, "orphan-2", map[string]string{label: "s7"})
			// Of a session this registry never knew: reported, never adopted.
			f.fake.AddSnapshot(f.project, "stranger", map[string]string{label: "other-deployment"})
			f.mu.Lock()
			f.now = now
			f.mu.Unlock()
			// Younger than the grace period: its report may be on the way.
			f.fake.AddSnapshot(f.project, "young", map[string]string{label: "s7"})
			f.fake.AddSnapshot(f.project, "unlabelled", map[string]string{"team": "x"})
			rep, err := f.sweeper(func(c *sweep.Config) { c.AdoptOrphans = adopt }).Run(context.Background(), false, "")
			if err != nil {
				t.Fatal(err)
			}
			wantAdopted := 0
			if adopt {
				wantAdopted = 2
			}
			if rep.Orphans.Found != 4 || rep.Orphans.Adopted != wantAdopted || rep.Orphans.InGrace != 1 || rep.Orphans.UnknownSession != 1 {
				t.Errorf("orphans found %d adopted %d in grace %d unknown session %d; want 4, %d, 1, 1",
					rep.Orphans.Found, rep.Orphans.Adopted, rep.Orphans.InGrace, rep.Orphans.UnknownSession, wantAdopted)
			}
			for _, name := range []string{"stranger", "young"} {
				if _, err := f.store.GetSnapshot(context.Background(), store.Key{Project: f.project, Name: name}); err == nil {
					t.Errorf("%s was adopted", name)
				}
			}
			rec, err := f.store.GetSnapshot(context.Background(), store.Key{Project: f.project, Name: "orphan-1"})
			if adopt {
				if err != nil || !rec.Orphan || rec.SessionID != "s7" || rec.State != store.Active || !rec.ExpiresAt.After(f.now) {
					t.Errorf("adopted orphan: %+v, %v", rec, err)
				}
			} else if err == nil {
				t.Error("orphan registered although adoption is off")
			}
			if _, err := f.store.GetSnapshot(context.Background(), store.Key{Project: f.project, Name: "unlabelled"}); err == nil {
				t.Error("a snapshot without the session label was adopted")
			}
		})
	}
}

func TestSweepThresholdNeverBreaksRetention(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// Failed 200h ago: past the 168h retention, eligible.
	f.put(t, "retained-old", store.Retained, store.TaskFailed, f.now.Add(-200*time.Hour))
	// Failed recently: protected by the failed-task retention.
	for i := range 3 {
		f.put(t, fmt.Sprintf("retained-new-%d", i), store.Retained, store.TaskFailed, f.now.Add(-time.Hour))
	}
	// Running tasks, not expired: protected.
	for i := range 3 {
		f.put(t, fmt.Sprintf("running-%d", i), store.Active, store.TaskRunning, f.now.Add(-time.Hour))
	}
	var logs bytes.Buffer
	ctx := telemetry.WithLogger(context.Background(), telemetry.NewLogger(&logs, nil, "p"))
	rep, err := f.sweeper(func(c *sweep.Config) { c.MaxLive = 3 }).Run(ctx, false, "")
	if err != nil {
		t.Fatal(err)
	}
	got := f.published(t)
	if len(got) != 1 || got["retained-old"] == "" {
		t.Errorf("emergency cleanup scheduled %v; want only retained-old", got)
	}
	if !rep.Threshold.Over || rep.Status != sweep.Failing {
		t.Errorf("over threshold: over=%v status=%s; want true, failing", rep.Threshold.Over, rep.Status)
	}
	errLines := 0
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line not JSON: %q", line)
		}
		if m["severity"] == "ERROR" {
			errLines++
			if !strings.Contains(fmt.Sprint(m["message"]), "live-snapshots") {
				t.Errorf("ERROR line does not name the failing check: %v", m["message"])
			}
		}
	}
	if errLines != 1 {
		t.Errorf("%d ERROR lines for one failing run, want exactly 1", errLines)
	}
	h, err := f.store.LatestHealth(context.Background(), 1)
	if err != nil || len(h) != 1 || h[0].Status != "failing" {
		t.Errorf("stored report: %+v, %v; want status failing", h, err)
	}
}

func TestSweepRunsOnceAndNeverOverlaps(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i := range 5 {
		f.put(t, fmt.Sprintf("old-%d", i), store.Active, store.TaskRunning, t0)
	}
	sw := f.sweeper(nil)
	const runID = "2026-11-01T12:00:00Z"
	var wg sync.WaitGroup
	reps := make([]*sweep.Report, 3)
	for i := range reps {
		wg.Go(func() {
			rep, err := sw.Run(context.Background(), false, runID)
			if err != nil {
				t.Error(err)
			}
			reps[i] = rep
		})
	}
	wg.Wait()
	acted := 0
	for _, r := range reps {
		if r.Skipped == "" {
			acted++
		}
	}
	if acted != 1 {
		t.Errorf("%d of 3 deliveries of one scheduled run acted, want 1", acted)
	}
	again, err := sw.Run(context.Background(), false, runID)
	if err != nil {
		t.Fatal(err)
	}
	if again.Skipped == "" {
		t.Error("a redelivery of a finished scheduled run acted again")
	}
	if n := len(f.published(t)); n != 5 {
		t.Errorf("%d snapshots scheduled, want 5 (once each)", n)
	}
}

func TestSweepHealthShowsComputeOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.fake.Outage(true)
	rep, err := f.sweeper(nil).Run(context.Background(), false, "")
	if err != nil {
		t.Fatal(err)
	}
	var check *sweep.Check
	for i, c := range rep.Checks {
		if c.Name == "compute:"+f.project {
			check = &rep.Checks[i]
		}
	}
	if check == nil || check.Status != sweep.Failing || rep.Status != sweep.Failing {
		t.Errorf("compute outage: check %+v, report status %s; want failing", check, rep.Status)
	}
}

// TestSweepRejudgesPendingSessions: a completed session whose outcome is
// still pending (its last judgement was lost) is judged by the sweep.
func TestSweepRejudgesPendingSessions(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	for i := range 3 {
		f.put(t, fmt.Sprintf("done-%d", i), store.Deleted, store.TaskSucceeded, t0)
	}
	if _, err := f.store.UpdateSession(ctx, "s1", func(*store.Session) (*store.Session, error) {
		return &store.Session{State: store.SessionCompleted, StartedAt: t0, CompletedAt: t0, Outcome: store.OutcomePending}, nil
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := f.sweeper(func(c *sweep.Config) { c.Judge = &cleanup.Judge{Store: f.store, Tolerance: 0.05, Now: f.clock} }).Run(ctx, false, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.store.GetSession(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != store.OutcomeCleaned || got.Deleted != 3 || rep.Sessions[store.OutcomeCleaned] != 1 {
		t.Errorf("session after sweep: %s with %d deleted (report %v); want cleaned with 3", got.Outcome, got.Deleted, rep.Sessions)
	}
}

// TestSweepSettlesVerdictsTheEngineSkipped: the engine's judgements are
// debounced, so a failure finishing within the judge's interval after a
// "cleaned" verdict leaves that verdict stale; the sweep's judgement of
// recently judged sessions must turn it into cleanup_failed.
func TestSweepSettlesVerdictsTheEngineSkipped(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.put(t, "done-0", store.Deleted, store.TaskSucceeded, t0)
	if _, err := f.store.UpdateSession(ctx, "s1", func(*store.Session) (*store.Session, error) {
		return &store.Session{State: store.SessionCompleted, StartedAt: t0, CompletedAt: t0, Outcome: store.OutcomePending}, nil
	}); err != nil {
		t.Fatal(err)
	}
	judge := &cleanup.Judge{Store: f.store, Tolerance: 0.05, Now: f.clock}
	if _, err := judge.JudgeSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.store.GetSession(ctx, "s1"); got.Outcome != store.OutcomeCleaned {
		t.Fatalf("first judgement: %+v, want cleaned", got)
	}
	// A snapshot reported late fails within the interval: its judgement
	// is skipped, and the verdict is no longer pending.
	f.put(t, "late", store.Failed, store.TaskSucceeded, t0)
	if v, err := judge.JudgeSession(ctx, "s1"); err != nil || v != "" {
		t.Fatalf("judgement within the interval: %q, %v; want it skipped", v, err)
	}
	if got, _ := f.store.GetSession(ctx, "s1"); got.Failed != 0 {
		t.Fatalf("the skipped judgement wrote: %+v", got)
	}
	if _, err := f.sweeper(func(c *sweep.Config) { c.Judge = judge }).Run(ctx, false, ""); err != nil {
		t.Fatal(err)
	}
	got, err := f.store.GetSession(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	want := store.Session{Outcome: store.OutcomeCleanupFailed, Deleted: 1, Failed: 1}
	if diff := cmp.Diff(want, store.Session{Outcome: got.Outcome, Deleted: got.Deleted, Failed: got.Failed}); diff != "" {
		t.Errorf("session after the sweep (-want +got):\n%s", diff)
	}
}
