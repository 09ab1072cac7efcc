package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync"

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

// Executor runs units with bounded concurrency, rolls back the ones that
// fail, and judges the run against a failure tolerance.
type Executor struct {
	// Concurrency bounds the units running at once (default 8).
	Concurrency int
	// Tolerance is the share of units that may fail before the run counts
	// as failed (0 = none may fail).
	Tolerance float64
	// Before and After, when set, run before and after the units (health
	// checks): a failing Before stops the run before any unit starts.
	Before, After func(ctx context.Context) error
}

// RunResult is what a run did.
type RunResult struct {
	Total, Succeeded, Failed, RolledBack int
	// Errors holds one error per failed unit (named after the unit).
	Errors []error
}

// FailureRatio is the share of units that failed.
func (r RunResult) FailureRatio() float64 {
	if r.Total == 0 {
		return 0
	}
	return float64(r.Failed) / float64(r.Total)
}

// ErrToleranceExceeded is returned when more units failed than tolerated.
var ErrToleranceExceeded = errors.New("failure tolerance exceeded")

// Run executes every unit (it keeps going past failures) and returns what
// happened. The error is non-nil when Before or After failed or when the
// failure ratio exceeds the tolerance; it then joins the unit errors.
func (e Executor) Run(ctx context.Context, units []Unit) (RunResult, error) {
	res := RunResult{Total: len(units)}
	if e.Before != nil {
		if err := e.Before(ctx); err != nil {
			return res, fmt.Errorf("check before run: %w", err)
		}
	}
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
				rbErr = u.Rollback(context.WithoutCancel(ctx))
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
	var errs []error
	if res.Failed > 0 && res.FailureRatio() > e.Tolerance {
		errs = append(errs, fmt.Errorf("%d of %d units failed: %w", res.Failed, res.Total, ErrToleranceExceeded))
		errs = append(errs, res.Errors...)
	}
	if e.After != nil {
		if err := e.After(ctx); err != nil {
			errs = append(errs, fmt.Errorf("check after run: %w", err))
		}
	}
	return res, errors.Join(errs...)
}
