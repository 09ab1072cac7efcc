// Package storetest is the contract every registry implementation passes:
// the Firestore store against the emulator, and the embedded Memory store.
//
// It is test support only; it checks records and transactions, not policy
// (lifecycle's tests do).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/store"
)

// Store is the full surface of a registry implementation, plus the
// seeding that only tests use (PutSnapshot writes a record as is; the
// service changes records only through transactions and lifecycle).
type Store interface {
	store.Registry
	PutSnapshot(ctx context.Context, s *store.Snapshot) error
}

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func snap(project, name, session, task string, st store.State, expires time.Time) *store.Snapshot {
	return &store.Snapshot{Project: project, Name: name, SessionID: session, TaskID: task, State: st,
		CreatedAt: t0, RegisteredAt: t0, UpdatedAt: t0, ExpiresAt: expires}
}

// Run runs the contract against stores made by newStore; each call must
// return an empty, isolated store.
func Run(t *testing.T, newStore func(t *testing.T) Store) {
	t.Run("UpdateSnapshotCreatesUpdatesAndSkips", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		key := store.Key{Project: "proj-a", Name: "snap-1"}
		if _, err := s.GetSnapshot(ctx, key); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetSnapshot of missing record: got %v, want ErrNotFound", err)
		}
		got, err := s.UpdateSnapshot(ctx, key, store.TaskKey{SessionID: "s1", TaskID: "t1"}, func(cur *store.Snapshot, task *store.Task) (*store.Snapshot, error) {
			if cur != nil || task != nil {
				return nil, fmt.Errorf("want no record and no task, got %v %v", cur, task)
			}
			return snap("ignored", "ignored", "s1", "t1", store.Active, t0.Add(time.Hour)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := snap("proj-a", "snap-1", "s1", "t1", store.Active, t0.Add(time.Hour))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("created record (-want +got):\n%s", diff)
		}
		read, err := s.GetSnapshot(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, normalize(read)); diff != "" {
			t.Errorf("read back (-want +got):\n%s", diff)
		}
		// The task is found through the record when no task key is given.
		if _, err := s.UpdateTask(ctx, store.TaskKey{SessionID: "s1", TaskID: "t1"}, func(cur *store.Task) (*store.Task, error) {
			return &store.Task{State: store.TaskSucceeded, StateTime: t0, UpdatedAt: t0}, nil
		}); err != nil {
			t.Fatal(err)
		}
		var sawTask store.TaskState
		unchanged, err := s.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, task *store.Task) (*store.Snapshot, error) {
			if task != nil {
				sawTask = task.State
			}
			return nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if sawTask != store.TaskSucceeded {
			t.Errorf("task seen by the update = %q, want %q", sawTask, store.TaskSucceeded)
		}
		if diff := cmp.Diff(want, normalize(unchanged)); diff != "" {
			t.Errorf("no-op update returns the current record (-want +got):\n%s", diff)
		}
		boom := errors.New("boom")
		if _, err := s.UpdateSnapshot(ctx, key, store.TaskKey{}, func(*store.Snapshot, *store.Task) (*store.Snapshot, error) {
			return nil, boom
		}); !errors.Is(err, boom) {
			t.Errorf("error of the update function: got %v, want %v", err, boom)
		}
	})

	t.Run("UpdateSnapshotHandsTheRightTask", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		key := store.Key{Project: "proj-a", Name: "snap-h"}
		mustPut(t, s, snap("proj-a", "snap-h", "s1", "t-own", store.Active, t0.Add(time.Hour)))
		for _, id := range []string{"t-own", "t-other"} {
			if _, err := s.UpdateTask(ctx, store.TaskKey{SessionID: "s1", TaskID: id}, func(*store.Task) (*store.Task, error) {
				return &store.Task{State: store.TaskSucceeded, UpdatedAt: t0}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		seen := func(cur *store.Snapshot, task *store.Task) string {
			if task == nil {
				return "no task"
			}
			return task.TaskID
		}
		var got []string
		for _, hint := range []string{"t-own", "t-other", ""} {
			if _, err := s.UpdateSnapshotHint(ctx, key, store.TaskKey{SessionID: "s1", TaskID: hint}, func(cur *store.Snapshot, task *store.Task) (*store.Snapshot, error) {
				got = append(got, seen(cur, task))
				return nil, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.UpdateSnapshotOnly(ctx, key, func(cur *store.Snapshot, task *store.Task) (*store.Snapshot, error) {
			got = append(got, seen(cur, task))
			return nil, nil
		}); err != nil {
			t.Fatal(err)
		}
		// A hint is a guess: the record's own task is handed over whatever it is.
		if diff := cmp.Diff([]string{"t-own", "t-own", "t-own", "no task"}, got); diff != "" {
			t.Errorf("tasks handed over (-want +got):\n%s", diff)
		}
	})

	t.Run("ApplySnapshotEventMarksInTheSameCommit", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		key := store.Key{Project: "proj-a", Name: "snap-m"}
		tk := store.TaskKey{SessionID: "s1", TaskID: "t1"}
		mark := store.Mark{EventID: "ev-1", Hash: "h1", At: t0, ExpireAt: t0.Add(time.Hour)}
		register := func(st store.State) func(*store.Snapshot, *store.Task) (*store.Snapshot, error) {
			return func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
				return snap("proj-a", "snap-m", "s1", "t1", st, t0.Add(time.Hour)), nil
			}
		}
		if _, err := s.ApplySnapshotEvent(ctx, key, tk, mark, register(store.Active)); err != nil {
			t.Fatal(err)
		}
		if h, ok, err := s.Processed(ctx, "ev-1"); err != nil || !ok || h != "h1" {
			t.Fatalf("marker after the event: %q, %v, %v; want h1", h, ok, err)
		}
		// Applied again (a redelivery, or another event reusing the id):
		// nothing is written, and the stored hash is reported.
		mark.Hash = "h2"
		_, err := s.ApplySnapshotEvent(ctx, key, tk, mark, register(store.Held))
		var pe *store.ProcessedError
		if !errors.As(err, &pe) || pe.Hash != "h1" {
			t.Fatalf("second application: %v, want a *ProcessedError with hash h1", err)
		}
		got, err := s.GetSnapshot(ctx, key)
		if err != nil || got.State != store.Active {
			t.Errorf("record after the refused application: %+v, %v; want it active", got, err)
		}
		// A function that writes nothing still marks the event.
		if _, err := s.ApplySnapshotEvent(ctx, key, tk, store.Mark{EventID: "ev-2", Hash: "h3", At: t0, ExpireAt: t0.Add(time.Hour)},
			func(*store.Snapshot, *store.Task) (*store.Snapshot, error) { return nil, nil }); err != nil {
			t.Fatal(err)
		}
		if h, ok, err := s.Processed(ctx, "ev-2"); err != nil || !ok || h != "h3" {
			t.Errorf("marker of an event that changed nothing: %q, %v, %v; want h3", h, ok, err)
		}
	})

	t.Run("GenerationsArchiveTheReplacedRecord", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		key := store.Key{Project: "proj-a", Name: "reused"}
		first := snap("proj-a", "reused", "s1", "t1", store.Deleted, t0)
		first.Generation, first.ComputeID = 1, "11"
		if _, err := s.UpdateSnapshot(ctx, key, store.TaskKey{}, func(*store.Snapshot, *store.Task) (*store.Snapshot, error) { return first, nil }); err != nil {
			t.Fatal(err)
		}
		_, err := s.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			second := snap("proj-a", "reused", "s1", "t2", store.Active, t0.Add(time.Hour))
			second.Generation, second.ComputeID, second.CreatedAt = 2, "12", t0.Add(time.Hour)
			old := *cur
			second.Replaced = &old
			return second, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cur, err := s.GetSnapshot(ctx, key)
		if err != nil || cur.Generation != 2 || cur.TaskID != "t2" || cur.Archived {
			t.Fatalf("current generation = %+v, %v; want generation 2 of t2", cur, err)
		}
		var all []store.Snapshot
		q := store.Query{SessionID: "s1", OrderByCreated: true, Limit: 1}
		for {
			page, err := s.ListSnapshots(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, page.Snapshots...)
			if page.Next == "" {
				break
			}
			q.After = page.Next
		}
		if len(all) != 2 || !all[0].Archived || all[0].Generation != 1 || all[0].ComputeID != "11" || all[1].Archived {
			t.Errorf("generations listed one a page = %+v; want the archived first and the current second", all)
		}
	})
	t.Run("ConcurrentUpdatesLoseNothing", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		key := store.Key{Project: "proj-a", Name: "hot"}
		if err := s.PutSnapshot(ctx, snap("proj-a", "hot", "s1", "t1", store.Active, t0)); err != nil {
			t.Fatal(err)
		}
		const n = 5
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Go(func() {
				_, err := s.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
					next := *cur
					next.Retries++
					return &next, nil
				})
				errs <- err
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.GetSnapshot(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got.Retries != n {
			t.Errorf("after %d concurrent increments Retries = %d", n, got.Retries)
		}
	})

	t.Run("QueriesPageAndCount", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		// 7 expired active, 3 not yet expired, 2 retained expired, 1 deleted expired.
		var want []string
		for i := range 7 {
			name := fmt.Sprintf("exp-%02d", i)
			want = append(want, name)
			mustPut(t, s, snap("proj-a", name, "s1", "t1", store.Active, t0.Add(time.Duration(i)*time.Minute)))
		}
		for i := range 3 {
			mustPut(t, s, snap("proj-a", fmt.Sprintf("fresh-%d", i), "s1", "t2", store.Active, t0.Add(48*time.Hour)))
		}
		for i := range 2 {
			name := fmt.Sprintf("ret-%d", i)
			want = append(want, name)
			mustPut(t, s, snap("proj-b", name, "s2", "t1", store.Retained, t0.Add(time.Duration(10+i)*time.Minute)))
		}
		mustPut(t, s, snap("proj-a", "gone", "s1", "t1", store.Deleted, t0))

		q := store.Query{States: []store.State{store.Active, store.Retained}, ExpiresBefore: t0.Add(time.Hour), Limit: 3}
		var got []string
		pages := 0
		for {
			page, err := s.ListSnapshots(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, sn := range page.Snapshots {
				got = append(got, sn.Name)
			}
			if page.Next == "" {
				break
			}
			q.After = page.Next
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("expired snapshots in expiry order (-want +got):\n%s", diff)
		}
		if pages < 3 {
			t.Errorf("pages = %d, want at least 3 with limit 3", pages)
		}
		n, err := s.CountSnapshots(ctx, store.Query{SessionID: "s1", States: []store.State{store.Active}})
		if err != nil {
			t.Fatal(err)
		}
		if n != 10 {
			t.Errorf("active snapshots of s1 = %d, want 10", n)
		}
		byState, err := s.CountByState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if byState[store.Active] != 10 || byState[store.Retained] != 2 || byState[store.Deleted] != 1 {
			t.Errorf("counts by state = %v", byState)
		}
		page, err := s.ListSnapshots(ctx, store.Query{SessionID: "s1", TaskID: "t2", States: []store.State{store.Active}})
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Snapshots) != 3 {
			t.Errorf("snapshots of task t2 = %d, want 3", len(page.Snapshots))
		}
		if _, err := s.ListSnapshots(ctx, store.Query{TaskID: "t1"}); err == nil {
			t.Error("query by task without session: want an error (no index serves it)")
		}
		if _, err := s.ListSnapshots(ctx, store.Query{SessionID: "s1", ExpiresBefore: t0}); err == nil {
			t.Error("query of an undeclared shape: want an error")
		}
	})

	t.Run("TasksAndSessions", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		for i, st := range []store.TaskState{store.TaskSucceeded, store.TaskSucceeded, store.TaskFailed, store.TaskRunning} {
			key := store.TaskKey{SessionID: "s1", TaskID: fmt.Sprintf("vm/%d", i)}
			if _, err := s.UpdateTask(ctx, key, func(cur *store.Task) (*store.Task, error) {
				return &store.Task{State: st, StateTime: t0, UpdatedAt: t0}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		done, err := s.ListTasks(ctx, "s1", store.TaskSucceeded)
		if err != nil {
			t.Fatal(err)
		}
		if len(done) != 2 || done[0].SessionID != "s1" {
			t.Errorf("succeeded tasks = %+v, want 2 of session s1", done)
		}
		if _, err := s.GetTask(ctx, store.TaskKey{SessionID: "s1", TaskID: "nope"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("missing task: got %v, want ErrNotFound", err)
		}
		for i, id := range []string{"older", "newer"} {
			if _, err := s.UpdateSession(ctx, id, func(cur *store.Session) (*store.Session, error) {
				return &store.Session{State: store.SessionRunning, StartedAt: t0.Add(time.Duration(i) * time.Hour), UpdatedAt: t0}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		first := &store.Session{SessionID: "created", State: store.SessionRunning, StartedAt: t0.Add(-2 * time.Hour)}
		if ok, err := s.CreateSession(ctx, first); err != nil || !ok {
			t.Fatalf("first CreateSession = %v, %v; want true", ok, err)
		}
		second := &store.Session{SessionID: "created", State: store.SessionCompleted, StartedAt: t0.Add(-time.Hour)}
		if ok, err := s.CreateSession(ctx, second); err != nil || ok {
			t.Fatalf("second CreateSession = %v, %v; want false", ok, err)
		}
		if got, err := s.GetSession(ctx, "created"); err != nil || got.State != store.SessionRunning {
			t.Errorf("CreateSession of an existing session replaced it: %+v, %v", got, err)
		}
		sessions, err := s.ListSessions(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, ss := range sessions {
			ids = append(ids, ss.SessionID)
		}
		if diff := cmp.Diff([]string{"newer", "older", "created"}, ids); diff != "" {
			t.Errorf("sessions newest first (-want +got):\n%s", diff)
		}
	})

	t.Run("ApplyTaskEventRefusesAnAppliedEvent", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		key := store.TaskKey{SessionID: "s1", TaskID: "vm-1"}
		calls := 0
		started := func(cur *store.Task) (*store.Task, error) {
			calls++
			return &store.Task{State: store.TaskRunning, StateTime: t0, UpdatedAt: t0}, nil
		}
		got, err := s.ApplyTaskEvent(ctx, key, "ev-1", started)
		if err != nil || got == nil || got.State != store.TaskRunning || got.SessionID != "s1" || got.TaskID != "vm-1" {
			t.Fatalf("first ApplyTaskEvent = %+v, %v; want the running task vm-1 of s1", got, err)
		}
		// The marker is written once the event's work is done.
		if err := s.MarkProcessed(ctx, "ev-1", "hash-1", t0, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		_, err = s.ApplyTaskEvent(ctx, key, "ev-1", func(cur *store.Task) (*store.Task, error) {
			t.Error("the function ran for an event applied before")
			return &store.Task{State: store.TaskFailed}, nil
		})
		var applied *store.ProcessedError
		if !errors.As(err, &applied) || applied.EventID != "ev-1" || applied.Hash != "hash-1" {
			t.Errorf("ApplyTaskEvent of an applied event = %v; want *ProcessedError for ev-1 with hash-1", err)
		}
		if cur, err := s.GetTask(ctx, key); err != nil || cur.State != store.TaskRunning {
			t.Errorf("task after the refused event = %+v, %v; want it unchanged (running)", cur, err)
		}
		// A function that writes nothing returns the task as read.
		if got, err := s.ApplyTaskEvent(ctx, key, "ev-2", func(*store.Task) (*store.Task, error) { return nil, nil }); err != nil || got == nil || got.State != store.TaskRunning {
			t.Errorf("ApplyTaskEvent writing nothing = %+v, %v; want the running task", got, err)
		}
		if calls != 1 {
			t.Errorf("the first function ran %d times, want 1", calls)
		}
	})

	t.Run("SessionsByOutcomeAndJudgedSince", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		for i, o := range []store.Outcome{store.OutcomePending, store.OutcomeCleaned, store.OutcomePending} {
			id := fmt.Sprintf("s%d", i)
			if _, err := s.UpdateSession(ctx, id, func(*store.Session) (*store.Session, error) {
				return &store.Session{State: store.SessionCompleted, Outcome: o, OutcomeAt: t0.Add(time.Duration(i) * time.Minute), StartedAt: t0, UpdatedAt: t0}, nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		ids := func(ss []store.Session) []string {
			var out []string
			for _, x := range ss {
				out = append(out, x.SessionID)
			}
			return out
		}
		pending, err := s.ListSessionsByOutcome(ctx, store.OutcomePending, 10)
		if err != nil {
			t.Fatal(err)
		}
		if got := ids(pending); len(got) != 2 || !(got[0] == "s0" && got[1] == "s2" || got[0] == "s2" && got[1] == "s0") {
			t.Errorf("pending sessions = %v, want s0 and s2", got)
		}
		recent, err := s.ListSessionsJudgedSince(ctx, t0.Add(time.Minute), 10)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"s2", "s1"}, ids(recent)); diff != "" {
			t.Errorf("sessions judged since t0+1m, most recent first (-want +got):\n%s", diff)
		}
		if one, err := s.ListSessionsJudgedSince(ctx, t0, 1); err != nil || len(one) != 1 || one[0].SessionID != "s2" {
			t.Errorf("ListSessionsJudgedSince with limit 1 = %v, %v; want [s2]", ids(one), err)
		}
	})

	t.Run("RejectedProcessedLeasesHealth", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		s := newStore(t)
		r := store.Rejected{ID: "m1", MessageID: "m1", Reason: "bad_json", Detail: "first", ReceivedAt: t0, ExpireAt: t0.Add(time.Hour)}
		if err := s.AddRejected(ctx, r); err != nil {
			t.Fatal(err)
		}
		r2 := r
		r2.Detail = "second"
		if err := s.AddRejected(ctx, r2); err != nil {
			t.Fatalf("recording the same message twice: %v", err)
		}
		if err := s.AddRejected(ctx, store.Rejected{ID: "m2", Reason: "unknown_type", ReceivedAt: t0.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		rej, err := s.ListRejected(ctx, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(rej) != 2 || rej[0].ID != "m2" || rej[1].Detail != "first" {
			t.Errorf("rejected, newest first, first record kept: %+v", rej)
		}

		if _, ok, err := s.Processed(ctx, "ev/1"); err != nil || ok {
			t.Errorf("Processed before marking = %v, %v", ok, err)
		}
		if err := s.MarkProcessed(ctx, "ev/1", "hash-1", t0, t0.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if h, ok, err := s.Processed(ctx, "ev/1"); err != nil || !ok || h != "hash-1" {
			t.Errorf("Processed after marking = %q, %v, %v; want hash-1, true", h, ok, err)
		}

		if ok, err := s.AcquireLease(ctx, "sweep", "a", t0, time.Minute); err != nil || !ok {
			t.Fatalf("first acquire = %v, %v", ok, err)
		}
		if ok, err := s.AcquireLease(ctx, "sweep", "b", t0.Add(30*time.Second), time.Minute); err != nil || ok {
			t.Errorf("acquire of a held lease = %v, %v; want false", ok, err)
		}
		if ok, err := s.AcquireLease(ctx, "sweep", "b", t0.Add(2*time.Minute), time.Minute); err != nil || !ok {
			t.Errorf("acquire of an expired lease = %v, %v; want true", ok, err)
		}
		if err := s.ReleaseLease(ctx, "sweep", "a"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.AcquireLease(ctx, "sweep", "c", t0.Add(150*time.Second), time.Minute); err != nil || ok {
			t.Errorf("release by a non-holder must not free the lease: got %v, %v", ok, err)
		}
		if err := s.ReleaseLease(ctx, "sweep", "b"); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.AcquireLease(ctx, "sweep", "c", t0.Add(150*time.Second), time.Minute); err != nil || !ok {
			t.Errorf("acquire after release = %v, %v", ok, err)
		}

		for i := range 3 {
			if err := s.SaveHealth(ctx, store.HealthRecord{ID: fmt.Sprintf("h%d", i), At: t0.Add(time.Duration(i) * time.Minute), Status: "ok", Report: "{}"}); err != nil {
				t.Fatal(err)
			}
		}
		h, err := s.LatestHealth(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(h) != 2 || h[0].ID != "h2" || h[1].ID != "h1" {
			t.Errorf("latest health reports = %+v, want h2, h1", h)
		}
		if err := s.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
	})
}

func mustPut(t *testing.T, s Store, sn *store.Snapshot) {
	t.Helper()
	if err := s.PutSnapshot(context.Background(), sn); err != nil {
		t.Fatal(err)
	}
}

// normalize puts times in UTC so that records read back compare equal.
func normalize(s *store.Snapshot) *store.Snapshot {
	if s == nil {
		return nil
	}
	c := *s
	for _, p := range []*time.Time{&c.CreatedAt, &c.RegisteredAt, &c.ExpiresAt, &c.UpdatedAt, &c.CleanupRequestedAt, &c.LeaseUntil, &c.DeletedAt} {
		if p.IsZero() {
			*p = time.Time{}
		} else {
			*p = p.UTC()
		}
	}
	return &c
}
