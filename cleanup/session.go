package cleanup

import (
	"context"
	"errors"
	"sync"
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
//
// The engine asks for a judgement after every finished snapshot; a
// session of thousands of snapshots finishing at once would make its
// document take one transaction per snapshot. JudgeSession therefore
// judges a session at most once per Interval: a verdict written less than
// Interval ago (Session.OutcomeAt) means "skip", decided from a plain read
// of the session, or from this instance's memory of its last judgement,
// and never by a write. Every skipped judgement is made up by the sweep,
// which re-judges every completed session whose verdict is pending or was
// written recently (JudgeNow); see docs/cleanup.md, "Session outcome".
type Judge struct {
	Store JudgeStore
	// Tolerance is the share of a session's deletions that may fail
	// (failed or refused) before the session counts as cleanup_failed.
	Tolerance float64
	// Interval is the least time between two verdicts written for one
	// session by JudgeSession (default DefaultJudgeInterval).
	Interval time.Duration
	Now      func() time.Time

	mu sync.Mutex
	// recent holds, per session, until when this instance skips its
	// judgements without reading the session: the end of the interval of
	// the last verdict it saw written, or of its last look at a session
	// that was not completed yet.
	recent map[string]time.Time
	// inflight holds the sessions this instance is judging right now.
	inflight map[string]bool
}

// DefaultJudgeInterval is Judge.Interval's default: a session document
// takes at most one judgement write every 10 s, far below Firestore's
// sustained limit of about one write a second per document.
const DefaultJudgeInterval = 10 * time.Second

// maxRecent bounds the sessions Judge remembers; past it, expired entries
// are dropped.
const maxRecent = 4096

func (j *Judge) interval() time.Duration {
	if j.Interval > 0 {
		return j.Interval
	}
	return DefaultJudgeInterval
}

// begin reports whether this call is the one judgement of id in flight in
// this instance; end releases it.
func (j *Judge) begin(id string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.inflight[id] {
		return false
	}
	if j.inflight == nil {
		j.inflight = make(map[string]bool)
	}
	j.inflight[id] = true
	return true
}

func (j *Judge) end(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.inflight, id)
}

// skipping reports whether this instance may skip judging id now.
func (j *Judge) skipping(id string, at time.Time) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return at.Before(j.recent[id])
}

func (j *Judge) remember(id string, until time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.recent == nil {
		j.recent = make(map[string]time.Time)
	}
	if len(j.recent) >= maxRecent {
		at := now(j.Now)
		for k, u := range j.recent {
			if !at.Before(u) {
				delete(j.recent, k)
			}
		}
	}
	if until.After(j.recent[id]) {
		j.recent[id] = until
	}
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

// JudgeSession is the judgement asked for after a snapshot of the session
// finished: it records and returns the session's outcome, unless a verdict
// was written less than Interval ago, in which case it writes nothing and
// returns "" (the sweep judges the session again). Sessions that are not
// completed have no outcome yet ("").
//
// Skipping is safe because of what the sweep re-judges: a skip happens
// only while the session is not completed (then session.completed's own
// judgement, or the sweep's, comes after this snapshot finished), while
// its verdict is younger than Interval (then the sweep's window of recent
// verdicts holds it), or while another judgement of the session runs in
// this instance: that one either counts this snapshot as finished, or
// counts it as still pending (its verdict is then pending, which the
// sweep judges again), or writes a verdict (which the window holds). Only
// one judgement per session and instance runs at a time, so that a burst
// of finished snapshots does not queue transactions on the document.
func (j *Judge) JudgeSession(ctx context.Context, id string) (store.Outcome, error) {
	at := now(j.Now)
	if j.skipping(id, at) || !j.begin(id) {
		return "", nil
	}
	defer j.end(id)
	s, err := j.Store.GetSession(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if s.State != store.SessionCompleted {
		j.remember(id, at.Add(j.interval()))
		return "", nil
	}
	if until := s.OutcomeAt.Add(j.interval()); s.Outcome != "" && !s.OutcomeAt.IsZero() && at.Before(until) {
		j.remember(id, until)
		return "", nil
	}
	return j.judge(ctx, s, at, true)
}

// JudgeNow judges the session at once, whenever its verdict was written:
// the sweep's judgement (and session.completed's), which makes up for the
// judgements JudgeSession skipped.
func (j *Judge) JudgeNow(ctx context.Context, id string) (store.Outcome, error) {
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
	return j.judge(ctx, s, now(j.Now), false)
}

// judge counts the session's snapshots and records the verdict if it
// changed. With debounce, a verdict written by another instance less than
// Interval ago wins and nothing is written.
func (j *Judge) judge(ctx context.Context, s *store.Session, at time.Time, debounce bool) (store.Outcome, error) {
	id := s.SessionID
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
	var written, recent time.Time
	_, err = j.Store.UpdateSession(ctx, id, func(cur *store.Session) (*store.Session, error) {
		written, recent = time.Time{}, time.Time{}
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
		if debounce && !cur.OutcomeAt.IsZero() && at.Before(cur.OutcomeAt.Add(j.interval())) {
			// Another judgement wrote less than Interval ago: the
			// sweep's window of recent verdicts holds this session.
			recent = cur.OutcomeAt
			return nil, nil
		}
		next := *cur
		next.Outcome, next.Deleted, next.Failed, next.OutcomeAt, next.UpdatedAt = v, deleted, failed, at, at
		written = at
		return &next, nil
	})
	if err != nil {
		return "", err
	}
	switch {
	case !written.IsZero():
		j.remember(id, written.Add(j.interval()))
	case !recent.IsZero():
		j.remember(id, recent.Add(j.interval()))
		return "", nil
	}
	return v, nil
}
