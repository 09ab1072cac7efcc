package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sethvargo/go-retry"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/store"
)

// Compute is what the engine needs from the Compute API.
type Compute interface {
	Get(ctx context.Context, project, name string) (gce.Snapshot, error)
	Delete(ctx context.Context, project, name, requestID string) (string, error)
	WaitOperation(ctx context.Context, project, opName string, maxWait time.Duration) (bool, error)
}

// EngineStore is what the engine needs from the registry.
type EngineStore interface {
	UpdateSnapshot(ctx context.Context, key store.Key, task store.TaskKey, fn store.SnapshotFunc) (*store.Snapshot, error)
}

// ErrRetryLater marks a cleanup that could not finish now for a reason a
// redelivery may fix (breaker open, quota, transient errors, another
// delivery holding the lease). The handler answers 503 so Pub/Sub retries.
var ErrRetryLater = errors.New("retry later")

// Result names what a cleanup message led to.
type Result string

// Cleanup results.
const (
	ResultDeleted     Result = "deleted"      // deleted by this call
	ResultAlreadyGone Result = "already_gone" // 404 or already deleted in the registry
	ResultRefused     Result = "refused"      // ownership label missing or wrong
	ResultFailed      Result = "failed"       // permanent Compute error
	ResultSkipped     Result = "skipped"      // not eligible (held, running, retained, ...)
	ResultDryRun      Result = "dry_run"      // would delete
	ResultPending     Result = "pending"      // delete issued, not confirmed yet
)

// Outcome reports one cleanup.
type Outcome struct {
	Result   Result      `json:"result"`
	State    store.State `json:"state"`
	Why      string      `json:"why,omitempty"`
	Attempts int         `json:"attempts"`
}

// EngineConfig configures an Engine. Zero values take the documented defaults.
type EngineConfig struct {
	Store   EngineStore
	Compute Compute
	Policy  Policy
	// SessionLabel is the label whose value must equal the session id.
	SessionLabel string
	// DryRun does everything but the delete call.
	DryRun bool
	// Rate is Compute delete calls per second (default 10); Concurrency
	// bounds concurrent Compute calls (default 16).
	Rate        float64
	Concurrency int
	// Lease is how long a claim holds a snapshot (default 2m): a second
	// delivery meanwhile is told to retry later; after it, the sweep or a
	// redelivery may take over.
	Lease time.Duration
	// Budget bounds the work on one message (default 45s, below the push
	// ack deadline); OpWait bounds the wait for a delete operation (15s).
	Budget, OpWait time.Duration
	// Backoff returns a fresh backoff for one message's retries (default
	// exponential from 250ms, ±20% jitter, capped at 5s).
	Backoff func() retry.Backoff
	// Breaker settings: it opens after BreakerFailures consecutive transient
	// failures (default 5) and tries again after BreakerTimeout (30s).
	BreakerFailures uint32
	BreakerTimeout  time.Duration
	// OnBreakerChange is told of every breaker state change.
	OnBreakerChange func(from, to string)
	// Owner names this instance in leases (default a random id).
	Owner string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sleep waits (default a timer honouring ctx); tests may drive it.
	Sleep func(ctx context.Context, d time.Duration) error
	// QuotaRefill returns when a spent Compute quota refills after now
	// (default gce.RetryAt: the next whole minute, as Compute does).
	QuotaRefill func(now time.Time) time.Time
	// Judge is told when a snapshot reached a final state, so that the
	// session's outcome can be judged (optional).
	Judge SessionJudge
	// Meter provides the engine's metrics (default: the global provider).
	Meter metric.MeterProvider
	// Tracer provides the engine's spans (default: the global provider).
	Tracer trace.TracerProvider
}

// SessionJudge evaluates a session's cleanup outcome.
type SessionJudge interface {
	JudgeSession(ctx context.Context, sessionID string) (store.Outcome, error)
}

// Engine deletes snapshots named by cleanup messages, safely: it claims the
// record with a lease, re-reads the snapshot right before deleting and checks
// the ownership label, deletes with a request id, and records the outcome.
type Engine struct {
	cfg     EngineConfig
	limiter *rate.Limiter
	sem     chan struct{}
	breaker *gobreaker.CircuitBreaker[any]
	// quotaUntil pauses delete calls until the next quota refill after a
	// rate-limit answer (unix nanoseconds), so one instance stops hammering
	// a quota that is already spent.
	quotaUntil atomic.Int64
	metrics    engineMetrics
	tracer     trace.Tracer
}

// NewEngine returns an engine.
func NewEngine(cfg EngineConfig) *Engine {
	if cfg.Rate <= 0 {
		cfg.Rate = 10
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 2 * time.Minute
	}
	if cfg.Budget <= 0 {
		cfg.Budget = 45 * time.Second
	}
	if cfg.OpWait <= 0 {
		cfg.OpWait = 15 * time.Second
	}
	if cfg.Backoff == nil {
		cfg.Backoff = func() retry.Backoff {
			return retry.WithCappedDuration(5*time.Second, retry.WithJitterPercent(20, retry.NewExponential(250*time.Millisecond)))
		}
	}
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 5
	}
	if cfg.BreakerTimeout <= 0 {
		cfg.BreakerTimeout = 30 * time.Second
	}
	if cfg.Owner == "" {
		cfg.Owner = fmt.Sprintf("instance-%d", time.Now().UnixNano())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Sleep == nil {
		cfg.Sleep = sleep
	}
	if cfg.QuotaRefill == nil {
		cfg.QuotaRefill = gce.RetryAt
	}
	e := &Engine{
		cfg:     cfg,
		limiter: rate.NewLimiter(rate.Limit(cfg.Rate), 1),
		sem:     make(chan struct{}, cfg.Concurrency),
	}
	e.metrics = newEngineMetrics(cfg.Meter, e)
	if cfg.Tracer == nil {
		cfg.Tracer = otel.GetTracerProvider()
	}
	e.tracer = cfg.Tracer.Tracer("github.com/snapsweep/snapsweep/cleanup")
	e.breaker = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:        "compute",
		MaxRequests: 1,
		Timeout:     cfg.BreakerTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= cfg.BreakerFailures },
		// Only trouble with the API itself trips the breaker; answers that
		// prove it works (404, refusals, quota) do not.
		IsSuccessful: func(err error) bool { return err == nil || gce.Classify(err) != gce.ClassTransient },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			if cfg.OnBreakerChange != nil {
				cfg.OnBreakerChange(from.String(), to.String())
			}
		},
	})
	return e
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// BreakerState is the Compute breaker's state: closed, half-open or open.
func (e *Engine) BreakerState() string { return e.breaker.State().String() }

// DryRun reports whether the engine only pretends to delete.
func (e *Engine) DryRun() bool { return e.cfg.DryRun }

func (e *Engine) now() time.Time { return now(e.cfg.Now) }

// claim is what the claim transaction decided.
type claim struct {
	rec     *store.Snapshot
	outcome *Outcome // set when there is nothing to delete
}

// Handle processes one cleanup message. A nil error means the message is
// done with (acknowledge it); an error wrapping ErrRetryLater or
// store.ErrUnavailable means redeliver it later.
func (e *Engine) Handle(ctx context.Context, m events.CleanupMessage) (out Outcome, err error) {
	ctx, span := e.tracer.Start(ctx, "cleanup snapshot", trace.WithAttributes(
		attribute.String("snapsweep.snapshot", m.Project+"/"+m.Name), attribute.String("snapsweep.session.id", m.SessionID),
		attribute.String("snapsweep.cleanup.reason", string(m.Reason))))
	defer func() {
		span.SetAttributes(attribute.String("snapsweep.cleanup.result", string(out.Result)), attribute.Int("snapsweep.cleanup.attempts", out.Attempts))
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "cleanup not finished")
		}
		span.End()
	}()
	return e.handle(ctx, m)
}

func (e *Engine) handle(ctx context.Context, m events.CleanupMessage) (Outcome, error) {
	if e.breaker.State() == gobreaker.StateOpen {
		return Outcome{}, fmt.Errorf("compute circuit breaker open: %w", ErrRetryLater)
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Budget)
	defer cancel()
	dry := e.cfg.DryRun || m.DryRun
	key := store.Key{Project: m.Project, Name: m.Name}
	if !events.ValidProjectID(m.Project) || !events.ValidSnapshotName(m.Name) {
		// Names go into Compute URL paths: never act on one that is not a
		// plain Compute name, whatever the registry holds.
		out := Outcome{Result: ResultSkipped, Why: fmt.Sprintf("invalid project or snapshot name %q/%q", m.Project, m.Name)}
		e.metrics.results.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(out.Result))))
		return out, nil
	}
	c, err := e.claim(ctx, key, m, dry)
	if err != nil {
		return Outcome{}, err
	}
	if c.outcome != nil {
		e.metrics.results.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(c.outcome.Result))))
		return *c.outcome, nil
	}
	out, err := e.delete(ctx, c.rec, dry)
	if err == nil && (out.Result == ResultDryRun || out.Result == ResultPending) {
		e.metrics.results.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(out.Result))))
	}
	if err != nil {
		if rbErr := e.release(context.WithoutCancel(ctx), c.rec, err); rbErr != nil {
			err = errors.Join(err, rbErr)
		}
		return out, err
	}
	return out, nil
}

// claim moves the record to deleting under a lease, or says why not.
func (e *Engine) claim(ctx context.Context, key store.Key, m events.CleanupMessage, dry bool) (claim, error) {
	at := e.now()
	var c claim
	var busy bool
	_, err := e.cfg.Store.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		c, busy = claim{}, false
		skip := func(res Result, st store.State, why string) (*store.Snapshot, error) {
			c.outcome = &Outcome{Result: res, State: st, Why: why}
			return nil, nil
		}
		switch {
		case cur == nil:
			return skip(ResultSkipped, "", "not registered")
		case cur.SessionID != m.SessionID:
			return skip(ResultSkipped, cur.State, fmt.Sprintf("registered to session %q, message names %q", cur.SessionID, m.SessionID))
		case cur.State == store.Deleted:
			return skip(ResultAlreadyGone, cur.State, "already deleted")
		case cur.State == store.Deleting && cur.LeaseUntil.After(at):
			busy = true
			return nil, nil
		case cur.State == store.Failed && m.Reason != events.ReasonManual:
			return skip(ResultSkipped, cur.State, "failed earlier; needs a manual cleanup: "+cur.Error)
		case cur.State == store.Held, cur.State == store.Refused:
			return skip(ResultSkipped, cur.State, string(cur.State))
		}
		d := e.cfg.Policy.Eligible(cur, t, at)
		if !d.Eligible {
			if cur.State == store.CleanupPending || cur.State == store.Deleting {
				// A stale request: put the record back where the policy says.
				next := *cur
				next.State, next.ExpiresAt = e.cfg.Policy.Settle(cur, t)
				next.PrevState, next.LeaseUntil, next.LeaseOwner, next.UpdatedAt = "", time.Time{}, "", at
				c.outcome = &Outcome{Result: ResultSkipped, State: next.State, Why: d.Why}
				return &next, nil
			}
			return skip(ResultSkipped, cur.State, d.Why)
		}
		next := *cur
		if cur.State != store.Deleting {
			next.PrevState = cur.State
		}
		if dry {
			c.rec = &next
			return nil, nil
		}
		next.State = store.Deleting
		next.Attempt = cur.Attempt + 1
		next.LeaseUntil = at.Add(e.cfg.Lease)
		next.LeaseOwner = e.cfg.Owner
		next.UpdatedAt = at
		if next.CleanupReason == "" {
			next.CleanupReason = string(m.Reason)
		}
		c.rec = &next
		return &next, nil
	})
	if err != nil {
		return claim{}, fmt.Errorf("claim %s: %w", key, err)
	}
	if busy {
		return claim{}, fmt.Errorf("%s is being deleted by another delivery: %w", key, ErrRetryLater)
	}
	return c, nil
}

// call runs one Compute call through the concurrency limit and the breaker.
func (e *Engine) call(ctx context.Context, op string, fn func(ctx context.Context) error) error {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.sem }()
	if op == opDelete {
		// Every delete call, retries included, takes a token, and takes it
		// while holding its concurrency slot, so that the call follows the
		// token at once instead of queueing behind the slot and bunching up
		// with others into a burst the quota window refuses.
		if err := e.waitQuota(ctx); err != nil {
			return fmt.Errorf("wait for delete quota: %w: %w", ErrRetryLater, err)
		}
	}
	_, err := e.breaker.Execute(func() (any, error) { return nil, fn(ctx) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return fmt.Errorf("compute circuit breaker open: %w", ErrRetryLater)
	}
	if err != nil {
		e.metrics.computeError(ctx, op, gce.Classify(err))
	}
	return err
}

// opDelete names the delete call; it is the one the rate limit paces.
const opDelete = "delete snapshot"

// retryable runs fn until it succeeds, fails for good, or the budget ends.
// Transient, in-use and rate-limited answers are retried with exponential
// backoff and jitter; a rate-limited answer also waits for the next quota
// refill (if the budget allows) and pauses this instance's other deletes.
func (e *Engine) retryable(ctx context.Context, op string, attempts *int, fn func(ctx context.Context) error) error {
	b := e.cfg.Backoff()
	for {
		*attempts++
		err := e.call(ctx, op, fn)
		if err == nil || errors.Is(err, ErrRetryLater) {
			return err
		}
		class := gce.Classify(err)
		switch class {
		case gce.ClassTransient, gce.ClassInUse, gce.ClassRateLimited:
		default:
			return err
		}
		d, stop := b.Next()
		if class == gce.ClassRateLimited {
			refill := e.cfg.QuotaRefill(e.cfg.Now())
			e.quotaUntil.Store(refill.UnixNano())
			d = max(d, refill.Sub(e.cfg.Now()))
		}
		if dl, ok := ctx.Deadline(); stop || (ok && e.cfg.Now().Add(d).After(dl)) {
			return fmt.Errorf("%s: giving up for now after %d attempts: %w: %w", op, *attempts, ErrRetryLater, err)
		}
		if err := e.cfg.Sleep(ctx, d); err != nil {
			return fmt.Errorf("%s: %w: %w", op, ErrRetryLater, err)
		}
	}
}

// waitQuota waits for the rate limiter and for a quota pause to end.
func (e *Engine) waitQuota(ctx context.Context) error {
	if until := time.Unix(0, e.quotaUntil.Load()); until.After(e.cfg.Now()) {
		if err := e.cfg.Sleep(ctx, until.Sub(e.cfg.Now())); err != nil {
			return err
		}
	}
	return e.limiter.Wait(ctx)
}

// delete re-reads the snapshot, checks ownership, deletes and confirms.
func (e *Engine) delete(ctx context.Context, rec *store.Snapshot, dry bool) (Outcome, error) {
	out := Outcome{}
	var snap gce.Snapshot
	err := e.retryable(ctx, "get snapshot", &out.Attempts, func(ctx context.Context) error {
		var err error
		snap, err = e.cfg.Compute.Get(ctx, rec.Project, rec.Name)
		return err
	})
	switch {
	case gce.Classify(err) == gce.ClassNotFound:
		if dry {
			return Outcome{Result: ResultDryRun, State: rec.State, Why: "already gone"}, nil
		}
		return e.finish(ctx, rec, ResultAlreadyGone, "not found before delete", out.Attempts, nil)
	case errors.Is(err, ErrRetryLater):
		return out, err
	case err != nil && gce.Classify(err) == gce.ClassPermanent:
		return e.finish(ctx, rec, ResultFailed, "read before delete: "+err.Error(), out.Attempts, err)
	case err != nil:
		return out, fmt.Errorf("read before delete: %w: %w", ErrRetryLater, err)
	}
	if got, ok := snap.Labels[e.cfg.SessionLabel]; !ok || got != rec.SessionID {
		why := fmt.Sprintf("label %s=%q does not match session %q", e.cfg.SessionLabel, got, rec.SessionID)
		if !ok {
			why = fmt.Sprintf("label %s missing (session %q)", e.cfg.SessionLabel, rec.SessionID)
		}
		if dry {
			return Outcome{Result: ResultDryRun, State: rec.State, Why: "would refuse: " + why}, nil
		}
		return e.finish(ctx, rec, ResultRefused, why, out.Attempts, nil)
	}
	if dry {
		return e.dryRun(ctx, rec)
	}
	if snap.Status == "DELETING" {
		// A previous attempt's delete is still running: confirm it rather
		// than issuing a second one.
		return e.confirmGone(ctx, rec, out.Attempts)
	}
	reqID := gce.RequestID(rec.Project, rec.Name, rec.Attempt)
	var opName string
	err = e.retryable(ctx, opDelete, &out.Attempts, func(ctx context.Context) error {
		var err error
		opName, err = e.cfg.Compute.Delete(ctx, rec.Project, rec.Name, reqID)
		return err
	})
	if err == nil {
		var done bool
		done, err = e.cfg.Compute.WaitOperation(ctx, rec.Project, opName, e.cfg.OpWait)
		if err == nil && !done {
			return e.pending(ctx, rec, opName, out.Attempts)
		}
		if gce.Classify(err) == gce.ClassNotFound {
			// The operation is unknown, which says nothing about the
			// snapshot: read it before calling it gone.
			if _, gerr := e.cfg.Compute.Get(ctx, rec.Project, rec.Name); gce.Classify(gerr) != gce.ClassNotFound {
				return e.pending(ctx, rec, opName, out.Attempts)
			}
		}
	}
	switch class := gce.Classify(err); {
	case err == nil:
		return e.finish(ctx, rec, ResultDeleted, "deleted", out.Attempts, nil)
	case class == gce.ClassNotFound:
		return e.finish(ctx, rec, ResultAlreadyGone, "not found at delete", out.Attempts, nil)
	case errors.Is(err, ErrRetryLater):
		return out, err
	case class == gce.ClassPermanent:
		return e.finish(ctx, rec, ResultFailed, err.Error(), out.Attempts, err)
	default:
		return out, fmt.Errorf("delete: %w: %w", ErrRetryLater, err)
	}
}

// confirmGone polls a snapshot that is already being deleted.
func (e *Engine) confirmGone(ctx context.Context, rec *store.Snapshot, attempts int) (Outcome, error) {
	deadline := e.cfg.Now().Add(e.cfg.OpWait)
	for e.cfg.Now().Before(deadline) {
		if err := e.cfg.Sleep(ctx, time.Second); err != nil {
			break
		}
		attempts++
		_, err := e.cfg.Compute.Get(ctx, rec.Project, rec.Name)
		if gce.Classify(err) == gce.ClassNotFound {
			return e.finish(ctx, rec, ResultAlreadyGone, "deleted by an earlier attempt", attempts, nil)
		}
	}
	return e.pending(ctx, rec, rec.Operation, attempts)
}

// pending records a delete that was issued but not confirmed in time: the
// record stays deleting (its lease runs out) and the sweep, or a
// redelivery, confirms it later instead of holding this request.
func (e *Engine) pending(ctx context.Context, rec *store.Snapshot, opName string, attempts int) (Outcome, error) {
	at := e.now()
	_, err := e.cfg.Store.UpdateSnapshot(ctx, rec.Key(), store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		if cur == nil || cur.State != store.Deleting || cur.Attempt != rec.Attempt {
			return nil, nil
		}
		next := *cur
		next.Operation = opName
		next.UpdatedAt = at
		return &next, nil
	})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Result: ResultPending, State: store.Deleting, Why: "delete issued, not confirmed within the wait; the sweep confirms it", Attempts: attempts}, nil
}

func (e *Engine) dryRun(ctx context.Context, rec *store.Snapshot) (Outcome, error) {
	if rec.State == store.CleanupPending {
		// Leave nothing claiming work that dry-run never does.
		at := e.now()
		_, err := e.cfg.Store.UpdateSnapshot(ctx, rec.Key(), store.TaskKey{}, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
			if cur == nil || cur.State != store.CleanupPending {
				return nil, nil
			}
			next := *cur
			next.State, next.ExpiresAt = e.cfg.Policy.Settle(cur, t)
			next.PrevState, next.UpdatedAt = "", at
			next.Error = "dry run: would delete"
			return &next, nil
		})
		if err != nil {
			return Outcome{}, err
		}
	}
	return Outcome{Result: ResultDryRun, State: rec.State, Why: "would delete"}, nil
}

// finish records a final outcome of this claim.
func (e *Engine) finish(ctx context.Context, rec *store.Snapshot, res Result, why string, attempts int, cause error) (Outcome, error) {
	at := e.now()
	var final *store.Snapshot
	_, err := e.cfg.Store.UpdateSnapshot(ctx, rec.Key(), store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		final = nil
		if cur == nil || cur.State == store.Deleted {
			return nil, nil
		}
		gone := res == ResultDeleted || res == ResultAlreadyGone
		// The truth that a snapshot is gone is always recorded; other
		// outcomes only while this claim still holds the record.
		if !gone && (cur.State != store.Deleting || cur.Attempt != rec.Attempt) {
			return nil, nil
		}
		next := *cur
		next.LeaseUntil, next.LeaseOwner, next.UpdatedAt = time.Time{}, "", at
		next.Retries = cur.Retries + max(attempts-1, 0)
		switch res {
		case ResultDeleted, ResultAlreadyGone:
			next.State, next.DeletedAt, next.Error, next.ErrorClass = store.Deleted, at, "", ""
			next.DeletedBy = "snapsweep"
			if res == ResultAlreadyGone {
				next.DeletedBy = "vanished"
			}
		case ResultRefused:
			next.State, next.Error, next.ErrorClass = store.Refused, why, "ownership"
		case ResultFailed:
			next.State, next.Error, next.ErrorClass = store.Failed, why, string(gce.Classify(cause))
		}
		final = &next
		return &next, nil
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("record %s of %s: %w", res, rec.Key(), err)
	}
	if final == nil {
		return Outcome{Result: res, State: store.Deleted, Why: why, Attempts: attempts}, nil
	}
	e.metrics.result(ctx, final, res, at)
	if e.cfg.Judge != nil {
		if _, err := e.cfg.Judge.JudgeSession(ctx, final.SessionID); err != nil {
			// The outcome is recorded; the judgement is redone by the next
			// finished snapshot or the sweep.
			return Outcome{Result: res, State: final.State, Why: why, Attempts: attempts}, nil
		}
	}
	return Outcome{Result: res, State: final.State, Why: why, Attempts: attempts}, nil
}

// release is the engine's rollback: it gives a claim up after a failure a
// retry may fix, putting the record back to cleanup_pending so the
// redelivery (or the sweep) can claim it again at once.
func (e *Engine) release(ctx context.Context, rec *store.Snapshot, cause error) error {
	at := e.now()
	_, err := e.cfg.Store.UpdateSnapshot(ctx, rec.Key(), store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		if cur == nil || cur.State != store.Deleting || cur.Attempt != rec.Attempt || cur.LeaseOwner != e.cfg.Owner {
			return nil, nil
		}
		next := *cur
		next.State = store.CleanupPending
		next.LeaseUntil, next.LeaseOwner = time.Time{}, ""
		next.CleanupRequestedAt, next.UpdatedAt = at, at
		next.Error, next.ErrorClass = cause.Error(), string(gce.Classify(cause))
		next.Retries = cur.Retries + 1
		return &next, nil
	})
	if err != nil {
		return fmt.Errorf("release claim of %s: %w", rec.Key(), err)
	}
	return nil
}
