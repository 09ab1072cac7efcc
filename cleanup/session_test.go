package cleanup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/store"
)

func TestJudgeVerdicts(t *testing.T) {
	t.Parallel()
	j := &cleanup.Judge{Tolerance: 0.05}
	tests := []struct {
		pending, deleted, failed int64
		want                     store.Outcome
	}{
		{1, 10, 0, store.OutcomePending},
		{0, 10, 0, store.OutcomeCleaned},
		{0, 100, 5, store.OutcomeCleanedWithErrors},
		{0, 100, 6, store.OutcomeCleanupFailed},
		{0, 0, 1, store.OutcomeCleanupFailed},
	}
	for _, tc := range tests {
		if got := j.Verdict(tc.pending, tc.deleted, tc.failed); got != tc.want {
			t.Errorf("Verdict(%d, %d, %d) = %s, want %s", tc.pending, tc.deleted, tc.failed, got, tc.want)
		}
	}
}

// TestJudgeNeverOverwritesWithAStaleCount: two deletions of a session
// finish together; the judgement that counted before the other landed must
// not overwrite the later one.
func TestJudgeNeverOverwritesWithAStaleCount(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := store.NewMemory()
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i := range 5 {
		st := store.Deleted
		if i == 4 {
			st = store.Deleting // what the slower judge still sees
		}
		if err := reg.PutSnapshot(ctx, &store.Snapshot{Project: "proj-a", Name: fmt.Sprintf("s-%d", i), SessionID: "s1", TaskID: "t", State: st}); err != nil {
			t.Fatal(err)
		}
	}
	// The faster judge already recorded the final outcome on 5 deletions.
	if _, err := reg.UpdateSession(ctx, "s1", func(*store.Session) (*store.Session, error) {
		return &store.Session{State: store.SessionCompleted, StartedAt: now, Outcome: store.OutcomeCleaned, Deleted: 5}, nil
	}); err != nil {
		t.Fatal(err)
	}
	j := &cleanup.Judge{Store: reg, Tolerance: 0.05}
	if _, err := j.JudgeSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	got, err := reg.GetSession(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Outcome != store.OutcomeCleaned || got.Deleted != 5 {
		t.Errorf("stale judgement overwrote the outcome: %s with %d deleted; want cleaned with 5", got.Outcome, got.Deleted)
	}
}

// TestJudgeSessionWritesOncePerInterval: judgements asked for by
// deletions finishing together write the session at most once per
// interval, in this instance and in another one (which knows only the
// session document); JudgeNow settles what they skipped, and after the
// interval a judgement writes again.
func TestJudgeSessionWritesOncePerInterval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := store.NewMemory()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return at }
	const n = 5
	for i := range n {
		if err := reg.PutSnapshot(ctx, &store.Snapshot{Project: "proj-a", Name: fmt.Sprintf("s-%d", i), SessionID: "s1", TaskID: "t", State: store.Deleting}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.UpdateSession(ctx, "s1", func(*store.Session) (*store.Session, error) {
		return &store.Session{State: store.SessionCompleted, StartedAt: at, Outcome: store.OutcomePending}, nil
	}); err != nil {
		t.Fatal(err)
	}
	finish := func(i int) {
		t.Helper()
		s, err := reg.GetSnapshot(ctx, store.Key{Project: "proj-a", Name: fmt.Sprintf("s-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		s.State = store.Deleted
		if err := reg.PutSnapshot(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() store.Session {
		t.Helper()
		s, err := reg.GetSession(ctx, "s1")
		if err != nil {
			t.Fatal(err)
		}
		return store.Session{Outcome: s.Outcome, Deleted: s.Deleted, OutcomeAt: s.OutcomeAt}
	}
	one := &cleanup.Judge{Store: reg, Tolerance: 0.05, Now: clock}
	other := &cleanup.Judge{Store: reg, Tolerance: 0.05, Now: clock}
	finish(0)
	if _, err := one.JudgeSession(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	first := store.Session{Outcome: store.OutcomePending, Deleted: 1, OutcomeAt: at}
	if diff := cmp.Diff(first, stored()); diff != "" {
		t.Fatalf("first judgement (-want +got):\n%s", diff)
	}
	at = at.Add(time.Second)
	for i := 1; i < n; i++ {
		finish(i)
		for _, j := range []*cleanup.Judge{one, other} {
			if v, err := j.JudgeSession(ctx, "s1"); err != nil || v != "" {
				t.Errorf("judgement %d within the interval: %q, %v; want skipped", i, v, err)
			}
		}
	}
	if diff := cmp.Diff(first, stored()); diff != "" {
		t.Errorf("judgements within the interval wrote (-want +got):\n%s", diff)
	}
	if v, err := other.JudgeNow(ctx, "s1"); err != nil || v != store.OutcomeCleaned {
		t.Fatalf("JudgeNow: %q, %v; want cleaned", v, err)
	}
	if diff := cmp.Diff(store.Session{Outcome: store.OutcomeCleaned, Deleted: n, OutcomeAt: at}, stored()); diff != "" {
		t.Errorf("after JudgeNow (-want +got):\n%s", diff)
	}
	// After the interval the debounced judgement writes again.
	if err := reg.PutSnapshot(ctx, &store.Snapshot{Project: "proj-a", Name: "late", SessionID: "s1", TaskID: "t", State: store.Refused}); err != nil {
		t.Fatal(err)
	}
	at = at.Add(cleanup.DefaultJudgeInterval)
	if v, err := one.JudgeSession(ctx, "s1"); err != nil || v != store.OutcomeCleanupFailed {
		t.Errorf("judgement after the interval: %q, %v; want cleanup_failed", v, err)
	}
}
