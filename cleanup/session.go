package cleanup

import (
	"context"
	"errors"
	"time"

	"github.com/snapsweep/snapsweep/store"
)

// JudgeStore is what judging a session needs from the registry.
type JudgeStore interface {
	GetSession(ctx context.Context, id string) (*store.Session, error)
	UpdateSession(ctx context.Context, id string, fn store.SessionFunc) (*store.Session, error)
	CountSnapshots(ctx context.Context, q store.Query) (int64, error)
}

// Judge decides a completed session's cleanup outcome against the failure
// tolerance, from counts the registry aggregates (no per-session counter
// document that every deletion would contend on).
type Judge struct {
	Store JudgeStore
	// Tolerance is the share of a session's deletions that may fail
	// (failed or refused) before the session counts as cleanup_failed.
	Tolerance float64
	Now       func() time.Time
}

// Verdict returns the outcome for the given counts.
func (j *Judge) Verdict(pending, deleted, failed int64) store.Outcome {
	switch {
	case pending > 0:
		return store.OutcomePending
	case failed == 0:
		return store.OutcomeCleaned
	case float64(failed)/float64(deleted+failed) <= j.Tolerance:
		return store.OutcomeCleanedWithErrors
	default:
		return store.OutcomeCleanupFailed
	}
}

// JudgeSession records and returns the session's outcome. Sessions that are
// not completed have none yet ("").
func (j *Judge) JudgeSession(ctx context.Context, id string) (store.Outcome, error) {
	s, err := j.Store.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if s.State != store.SessionCompleted {
		return "", nil
	}
	count := func(states ...store.State) (int64, error) {
		return j.Store.CountSnapshots(ctx, store.Query{SessionID: id, States: states})
	}
	pending, err := count(store.CleanupPending, store.Deleting)
	if err != nil {
		return "", err
	}
	deleted, err := count(store.Deleted)
	if err != nil {
		return "", err
	}
	failed, err := count(store.Failed, store.Refused)
	if err != nil {
		return "", err
	}
	v := j.Verdict(pending, deleted, failed)
	if v == s.Outcome && s.Deleted == deleted && s.Failed == failed {
		return v, nil
	}
	at := now(j.Now)
	_, err = j.Store.UpdateSession(ctx, id, func(cur *store.Session) (*store.Session, error) {
		if cur == nil {
			return nil, nil
		}
		// Judgements race when a session's last deletions finish together:
		// one counted before the other's deletion landed. Finished counts
		// only grow, so a judgement on fewer finished snapshots than the
		// stored one is stale and must not overwrite it.
		if cur.Deleted+cur.Failed > deleted+failed || (cur.Outcome == v && cur.Deleted == deleted && cur.Failed == failed) {
			return nil, nil
		}
		next := *cur
		next.Outcome, next.Deleted, next.Failed, next.OutcomeAt, next.UpdatedAt = v, deleted, failed, at, at
		return &next, nil
	})
	return v, err
}
