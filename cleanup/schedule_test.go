package cleanup_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// publisher records what it is asked to send and fails for the names in fail.
type publisher struct {
	mu   sync.Mutex
	fail map[string]bool
	sent []string
}

func (p *publisher) Publish(_ context.Context, m events.CleanupMessage) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail[m.Name] {
		return errors.New("pubsub: unavailable")
	}
	p.sent = append(p.sent, m.Name)
	return nil
}

// TestScheduleRollsBackWhenPublishFails: a claim whose cleanup message was
// never sent is rolled back (the record returns to active and can be
// claimed again), the others stay claimed, and the caller gets an error so
// that the event is redelivered; the redelivery then publishes it.
func TestScheduleRollsBackWhenPublishFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	reg := store.NewMemory()
	tk := store.TaskKey{SessionID: "s1", TaskID: "t1"}
	if _, err := reg.UpdateTask(ctx, tk, func(*store.Task) (*store.Task, error) {
		return &store.Task{State: store.TaskSucceeded, StateTime: t0}, nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"snap-ok", "snap-lost"} {
		s := &store.Snapshot{Project: "proj-a", Name: name, SessionID: "s1", TaskID: "t1", State: store.Active,
			CreatedAt: t0, UpdatedAt: t0, ExpiresAt: t0.Add(72 * time.Hour)}
		if err := reg.PutSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	pub := &publisher{fail: map[string]bool{"snap-lost": true}}
	sched := &cleanup.Scheduler{Store: reg, Publisher: pub, Now: func() time.Time { return t0.Add(time.Hour) },
		Policy: lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{"proj-a"})}}

	res, err := sched.ScheduleTask(ctx, tk, events.ReasonTaskCompleted)
	if err == nil {
		t.Fatal("ScheduleTask succeeded although a publish failed; want an error (the event must be redelivered)")
	}
	if res.Published != 1 || res.Failed != 1 || res.RolledBack != 1 {
		t.Errorf("result %+v; want 1 published, 1 failed and rolled back", res.RunResult)
	}
	state := func(name string) store.State {
		rec, err := reg.GetSnapshot(ctx, store.Key{Project: "proj-a", Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return rec.State
	}
	got := map[string]store.State{"snap-ok": state("snap-ok"), "snap-lost": state("snap-lost")}
	want := map[string]store.State{"snap-ok": store.CleanupPending, "snap-lost": store.Active}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("states after a failed publish (-want +got):\n%s", diff)
	}

	// The redelivery, with Pub/Sub back: the lost one is claimed and sent,
	// the pending one sent again (its first message may be the lost one).
	pub.mu.Lock()
	pub.fail = nil
	pub.mu.Unlock()
	if _, err := sched.ScheduleTask(ctx, tk, events.ReasonTaskCompleted); err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if got := state("snap-lost"); got != store.CleanupPending {
		t.Errorf("after the redelivery snap-lost is %s, want %s", got, store.CleanupPending)
	}
}

// TestPlanAgreesWithSchedule: the dry run's plan says schedule exactly for
// the snapshots Schedule then claims.
func TestPlanAgreesWithSchedule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0.Add(time.Hour)
	policy := lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{"proj-a"})}
	reg := store.NewMemory()
	done := &store.Task{SessionID: "s1", TaskID: "t1", State: store.TaskSucceeded, StateTime: t0}
	running := &store.Task{SessionID: "s1", TaskID: "t2", State: store.TaskRunning, StateTime: t0}
	snaps := []store.Snapshot{
		{Project: "proj-a", Name: "done", SessionID: "s1", TaskID: "t1", State: store.Active},
		{Project: "proj-a", Name: "running", SessionID: "s1", TaskID: "t2", State: store.Active},
		{Project: "proj-a", Name: "held", SessionID: "s1", TaskID: "t1", State: store.Held, PrevState: store.Active},
	}
	tasks := map[string]*store.Task{"t1": done, "t2": running}
	for _, tk := range tasks {
		if _, err := reg.UpdateTask(ctx, tk.Key(), func(*store.Task) (*store.Task, error) { c := *tk; return &c, nil }); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{}
	for i := range snaps {
		snaps[i].CreatedAt, snaps[i].UpdatedAt, snaps[i].ExpiresAt = t0, t0, t0.Add(72*time.Hour)
		if err := reg.PutSnapshot(ctx, &snaps[i]); err != nil {
			t.Fatal(err)
		}
		action, why := cleanup.Plan(policy, &snaps[i], tasks[snaps[i].TaskID], events.ReasonManual, now)
		if why == "" {
			t.Errorf("%s: plan %s without a reason", snaps[i].Name, action)
		}
		want[snaps[i].Name] = action
	}
	if diff := cmp.Diff(map[string]string{"done": "schedule", "running": "skip", "held": "skip"}, want); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	sched := &cleanup.Scheduler{Store: reg, Publisher: &publisher{}, Policy: policy, Now: func() time.Time { return now }}
	if _, err := sched.Schedule(ctx, snaps, events.ReasonManual); err != nil {
		t.Fatal(err)
	}
	for _, s := range snaps {
		rec, err := reg.GetSnapshot(ctx, s.Key())
		if err != nil {
			t.Fatal(err)
		}
		if claimed := rec.State == store.CleanupPending; claimed != (want[s.Name] == "schedule") {
			t.Errorf("%s: planned %s, Schedule left it %s", s.Name, want[s.Name], rec.State)
		}
	}
}
