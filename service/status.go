package service

import (
	"context"
	"fmt"
	"time"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/status"
	"github.com/snapsweep/snapsweep/store"
)

// StatusSource computes GET /status (package status's wire types) from the
// registry: the service's handler and `snapsweep sessions show` both call
// it. It reads the registry and never changes it.
type StatusSource struct {
	Store  store.Registry
	Prices cost.Prices
	// Now is the clock (default time.Now); Breaker reports the Compute
	// breaker's state (nil: "unknown").
	Now     func() time.Time
	Breaker func() string
	DryRun  bool
	Version string
}

func (s *StatusSource) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Overall is GET /status.
func (s *StatusSource) Overall(ctx context.Context) (status.Report, error) {
	counts, err := s.Store.CountByState(ctx)
	if err != nil {
		return status.Report{}, err
	}
	sessions, err := s.Store.ListSessions(ctx, 50)
	if err != nil {
		return status.Report{}, err
	}
	rep := status.Report{Counts: map[string]int64{}, Breaker: "unknown", DryRun: s.DryRun, Version: s.Version}
	for st, n := range counts {
		rep.Counts[string(st)] = n
	}
	for _, sess := range sessions {
		rep.Sessions = append(rep.Sessions, WireSession(sess))
	}
	if s.Breaker != nil {
		rep.Breaker = s.Breaker()
	}
	if h, err := s.Store.LatestHealth(ctx, 1); err == nil && len(h) > 0 {
		rep.Health = status.NewHealth(h[0].At, h[0].Status, h[0].Report)
	}
	recs, _, partial, err := cost.Load(ctx, s.Store, cost.Filter{Max: status.MaxRecords})
	if err != nil {
		return status.Report{}, err
	}
	c := cost.Compute(recs, s.Prices, s.now())
	rep.Storage = &status.Storage{Currency: c.Currency, Prices: c.Prices, Overall: c.Overall, Projects: c.Projects,
		Missing: c.Missing, Savings: cost.Line(c.Overall, c.Currency), Bounds: c.Bounds, Partial: partial}
	return rep, nil
}

// Session is GET /status?session=ID. A session the registry does not know
// is store.ErrNotFound.
func (s *StatusSource) Session(ctx context.Context, id string) (status.Session, error) {
	sess, err := s.Store.GetSession(ctx, id)
	if err != nil {
		return status.Session{}, err
	}
	out := status.Session{Session: WireSession(*sess), Counts: map[string]int64{}, Tasks: map[string]int64{}}
	for _, st := range store.States() {
		n, err := s.Store.CountSnapshots(ctx, store.Query{SessionID: id, States: []store.State{st}})
		if err != nil {
			return status.Session{}, fmt.Errorf("count snapshots: %w", err)
		}
		out.Counts[string(st)] = n
	}
	for _, st := range []store.TaskState{store.TaskRunning, store.TaskSucceeded, store.TaskFailed} {
		tasks, err := s.Store.ListTasks(ctx, id, st)
		if err != nil {
			return status.Session{}, fmt.Errorf("list tasks: %w", err)
		}
		out.Tasks[string(st)] = int64(len(tasks))
		if st == store.TaskFailed {
			for _, t := range tasks {
				out.Failed = append(out.Failed, WireTask(t))
			}
		}
	}
	recs, _, _, err := cost.Load(ctx, s.Store, cost.Filter{SessionID: id})
	if err != nil {
		return status.Session{}, err
	}
	c := cost.Compute(recs, s.Prices, s.now())
	out.Storage, out.Retained, out.Missing, out.Currency = c.Sessions[id], c.Retained, c.Missing, c.Currency
	if out.Storage == nil {
		out.Storage = &cost.Figures{Kept: map[cost.Reason]cost.Amount{}}
	}
	out.Savings = cost.Line(*out.Storage, c.Currency)
	return out, nil
}

// WireSession is a session record on the wire.
func WireSession(s store.Session) status.SessionRecord {
	return status.SessionRecord{SessionID: s.SessionID, State: string(s.State), StartedAt: s.StartedAt, CompletedAt: s.CompletedAt,
		Outcome: status.Outcome(s.Outcome), OutcomeAt: s.OutcomeAt, Deleted: s.Deleted, Failed: s.Failed, UpdatedAt: s.UpdatedAt}
}

// WireTask is a task record on the wire.
func WireTask(t store.Task) status.Task {
	return status.Task{SessionID: t.SessionID, TaskID: t.TaskID, State: string(t.State), StateTime: t.StateTime,
		StateEventID: t.StateEventID, FailedAt: t.FailedAt, FailureSeenAt: t.FailureSeenAt, StartedAt: t.StartedAt,
		FinishedAt: t.FinishedAt, Error: t.Error, UpdatedAt: t.UpdatedAt}
}
