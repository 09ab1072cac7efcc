package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Unit is one piece of cleanup work (schedule a snapshot's cleanup, delete a
// snapshot, clean a session, an emergency cleanup, a health check). Execute
// does the work; when a step after a state change fails, Rollback puts the
// records back where they were, so that nothing is left claiming work that
// never happens. Rollback must be safe to call after any Execute error.
type Unit interface {
	Name() string
	Execute(ctx context.Context) error
	Rollback(ctx context.Context) error
}

// Executor runs units with bounded concurrency and rolls back the ones
// that fail. (A session's failure tolerance is judged by Judge, on the
// registry, not here: a run is one instance's share of the work.)
type Executor struct {
	// Concurrency bounds the units running at once (default 8).
	Concurrency int
}

// rollbackTimeout bounds one rollback: it runs after the unit failed, also
// when the request's context has ended, and must not hang on a stalled
// registry (a claim left behind is re-driven by the sweep).
const rollbackTimeout = 10 * time.Second

// RunResult is what a run did.
type RunResult struct {
	Total, Succeeded, Failed, RolledBack int
	// Errors holds one error per failed unit (named after the unit).
	Errors []error
}

// Run executes every unit (it keeps going past failures) and returns what
// happened. The error is non-nil when any unit failed; it joins the unit
// errors.
func (e Executor) Run(ctx context.Context, units []Unit) (RunResult, error) {
	res := RunResult{Total: len(units)}
	n := e.Concurrency
	if n <= 0 {
		n = 8
	}
	var mu sync.Mutex
	var g errgroup.Group
	g.SetLimit(n)
	for _, u := range units {
		g.Go(func() error {
			err := u.Execute(ctx)
			var rbErr error
			if err != nil {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
				rbErr = u.Rollback(rctx)
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				res.Succeeded++
				return nil
			}
			res.Failed++
			if rbErr == nil {
				res.RolledBack++
				res.Errors = append(res.Errors, fmt.Errorf("%s: %w", u.Name(), err))
			} else {
				res.Errors = append(res.Errors, fmt.Errorf("%s: %w (rollback: %w)", u.Name(), err, rbErr))
			}
			return nil
		})
	}
	_ = g.Wait()
	if res.Failed == 0 {
		return res, nil
	}
	return res, fmt.Errorf("%d of %d units failed: %w", res.Failed, res.Total, errors.Join(res.Errors...))
}
