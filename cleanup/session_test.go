package cleanup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

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
