package cleanup

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
	"github.com/snapsweep/snapsweep/internal/wait"
	"github.com/snapsweep/snapsweep/lifecycle"
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
	UpdateSnapshotHint(ctx context.Context, key store.Key, hint store.TaskKey, fn store.SnapshotFunc) (*store.Snapshot, error)
	UpdateSnapshotOnly(ctx context.Context, key store.Key, fn store.SnapshotFunc) (*store.Snapshot, error)
}

// update runs one lifecycle transition on the record of key in a registry
// transaction; the transition sees the record and its task as they are now.
// hint is the task the record is expected to name: read with the record in
// one round trip (the record's own task is handed over whatever it names).
func update(ctx context.Context, st EngineStore, key store.Key, hint store.TaskKey, fn func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error)) (*store.Snapshot, error) {
	return st.UpdateSnapshotHint(ctx, key, hint, fn)
}

// updateOnly runs a transition that does not look at the task: only the
// record is read.
func updateOnly(ctx context.Context, st EngineStore, key store.Key, fn func(cur *store.Snapshot) (*store.Snapshot, error)) (*store.Snapshot, error) {
	return st.UpdateSnapshotOnly(ctx, key, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) { return fn(cur) })
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
	// Policy holds the rules; its allowlist is enforced here (rule 1),
	// whatever the caller checked before.
	Policy lifecycle.Policy
	// SessionLabel is the label whose value must equal the session id.
	SessionLabel string
	// DryRun does everything but the delete call.
	DryRun bool
	// Rate is Compute delete calls per second per project (default 10),
	// RateByProject overrides it for single projects: Compute counts its
	// rate quotas per project, so every project is paced on its own.
	Rate          float64
	RateByProject map[string]float64
	// Concurrency bounds the concurrent Compute calls of this instance
	// (default 16). Each allowlisted project has a share of its own,
	// Concurrency divided by the number of projects (at least 1), so no
	// project waits for another's calls.
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
	// Breaker settings. It counts Compute calls over a rolling window of
	// BreakerWindow (default 30s, in six buckets) and opens when at least
	// BreakerMinRequests calls (default 20) were made in it and a share of
	// at least BreakerRatio of them (default 0.6) failed transiently: a
	// sick-but-working API (30 % 503s) keeps it closed, an outage opens it.
	// After BreakerTimeout (default 15s) it lets BreakerProbes calls
	// through (default 3, half-open); all of them succeeding closes it, one
	// failing opens it again.
	BreakerRatio       float64
	BreakerMinRequests uint32
	BreakerWindow      time.Duration
	BreakerTimeout     time.Duration
	BreakerProbes      uint32
	// BreakerWait, LeaseWait: how long one delivery waits inside its
	// request for an open breaker to let calls through again (default 3s)
	// or for another delivery's lease on its snapshot to end (default 3s),
	// before it asks for a redelivery. Pub/Sub push flow control shrinks
	// the push window on every nack, so a short wait that ends in an
	// answer keeps deliveries flowing better than an immediate 503
	// (docs/cleanup.md, "Failing fast without starving the push window").
	BreakerWait, LeaseWait time.Duration
	// OnBreakerChange is told of every breaker state change.
	OnBreakerChange func(from, to string)
	// Owner names this instance in leases (default a random id).
	Owner string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Sleep waits (default a timer honouring ctx); tests may drive it.
	Sleep func(ctx context.Context, d time.Duration) error
	// QuotaRefill returns when a spent Compute quota refills for a call
	// refused that was sent at the given time (default gce.RetryAt: the
	// next whole minute, as Compute counts calls in synchronized minutes).
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
	cfg EngineConfig
	// sem bounds the instance's concurrent Compute calls; each project's
	// pace has its share of it.
	sem chan struct{}
	// breaker is global: it watches the health of the Compute API, which
	// is one service for every project (docs/cleanup.md, "Pacing").
	breaker *gobreaker.CircuitBreaker[any]
	// paces holds each project's rate limiter, quota pause and slots.
	pacesMu sync.Mutex
	paces   map[string]*pace
	share   int // slots per project
	// claims numbers this instance's claims (lease owners).
	claims  atomic.Int64
	metrics engineMetrics
	tracer  trace.Tracer
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
	if cfg.BreakerRatio <= 0 {
		cfg.BreakerRatio = 0.6
	}
	if cfg.BreakerMinRequests == 0 {
		cfg.BreakerMinRequests = 20
	}
	if cfg.BreakerWindow <= 0 {
		cfg.BreakerWindow = 30 * time.Second
	}
	if cfg.BreakerTimeout <= 0 {
		cfg.BreakerTimeout = 15 * time.Second
	}
	if cfg.BreakerProbes == 0 {
		cfg.BreakerProbes = 3
	}
	if cfg.BreakerWait <= 0 {
		cfg.BreakerWait = 3 * time.Second
	}
	if cfg.LeaseWait <= 0 {
		cfg.LeaseWait = 3 * time.Second
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
		cfg:   cfg,
		sem:   make(chan struct{}, cfg.Concurrency),
		paces: map[string]*pace{},
		share: max(1, cfg.Concurrency/max(1, len(cfg.Policy.Projects))),
	}
	e.metrics = newEngineMetrics(cfg.Meter, e)
	if cfg.Tracer == nil {
		cfg.Tracer = otel.GetTracerProvider()
	}
	e.tracer = cfg.Tracer.Tracer("github.com/snapsweep/snapsweep/cleanup")
	e.breaker = gobreaker.NewCircuitBreaker[any](gobreaker.Settings{
		Name:         "compute",
		MaxRequests:  cfg.BreakerProbes,
		Interval:     cfg.BreakerWindow,
		BucketPeriod: cfg.BreakerWindow / 6,
		Timeout:      cfg.BreakerTimeout,
		// A failure ratio over the window, not consecutive failures:
		// concurrent calls interleave, so a run of failures says little
		// about the API when many calls are in flight.
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.Requests >= cfg.BreakerMinRequests && float64(c.TotalFailures) >= cfg.BreakerRatio*float64(c.Requests)
		},
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

func sleep(ctx context.Context, d time.Duration) error { return wait.Sleep(ctx, d) }

// BreakerState is the Compute breaker's state: closed, half-open or open.
func (e *Engine) BreakerState() string { return e.breaker.State().String() }

func (e *Engine) now() time.Time { return now(e.cfg.Now) }

// claim is what the claim's look decided. The look writes nothing: the
// claim (lifecycle.StartDelete) is taken in the transaction of this
// delivery's first write, together with it (see change), so that the
// claim and the last check before the DELETE cost one write, not two.
type claim struct {
	rec     *store.Snapshot // the record as the claim would write it
	lease   lifecycle.Lease
	outcome *Outcome // set when there is nothing to delete
	msg     events.CleanupMessage
	// taken is set once the claim is in the registry.
	taken *bool
}

// errChanged ends a delivery whose record changed between the claim's look
// and its taking (another delivery claimed it, an operator held it, ...):
// a redelivery looks again.
var errChanged = fmt.Errorf("the record changed since this delivery looked at it: %w", ErrRetryLater)

// change runs one transition of this claim in a registry transaction. If
// the claim is not taken yet, it is taken in the same transaction, right
// before the transition (lifecycle.StartDelete, then tr: both checked
// against the record as it is now), and the two are one write. withTask
// hands tr the record's task.
func (e *Engine) change(ctx context.Context, c claim, withTask bool, tr func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error)) (*store.Snapshot, error) {
	if *c.taken {
		if withTask {
			return update(ctx, e.cfg.Store, c.rec.Key(), c.rec.TaskKey(), tr)
		}
		return updateOnly(ctx, e.cfg.Store, c.rec.Key(), func(cur *store.Snapshot) (*store.Snapshot, error) { return tr(cur, nil) })
	}
	at := e.now()
	wrote := false
	out, err := update(ctx, e.cfg.Store, c.rec.Key(), c.rec.TaskKey(), func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		wrote = false
		claimed, st, err := e.cfg.Policy.StartDeleteFor(cur, t, c.msg, c.lease.Owner, e.cfg.Lease, at)
		if err != nil {
			return nil, err
		}
		if st.Lease == nil || *st.Lease != c.lease || claimed.Generation != c.rec.Generation || claimed.ComputeID != c.rec.ComputeID {
			// Another claim, a hold, a new generation of the name or a
			// Compute id learnt meanwhile: what was read and checked
			// since the look may not be about this record any more.
			return nil, errChanged
		}
		next, err := tr(claimed, t)
		wrote = next != nil && err == nil
		return next, err
	})
	if err == nil && wrote {
		*c.taken = true
	}
	return out, err
}

// Handle processes one cleanup message. A nil error means the message is
// done with (acknowledge it); an error wrapping ErrRetryLater or
// store.ErrUnavailable means redeliver it later; a *events.RejectError means
// the message can never be processed (acknowledge and record it).
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
	if err := e.cfg.Policy.Projects.Check(m.Project); err != nil {
		// Rule 1, where the delete happens: nothing is read or written.
		return Outcome{Result: ResultSkipped, Why: err.Error()}, err
	}
	ctx, cancel := context.WithTimeout(ctx, e.cfg.Budget)
	defer cancel()
	// Nothing is claimed while the breaker is open: wait a little for it
	// inside the request rather than nacking at once.
	if err := e.waitBreaker(ctx); err != nil {
		return Outcome{}, err
	}
	dry := e.cfg.DryRun || m.DryRun
	key := store.Key{Project: m.Project, Name: m.Name}
	if !events.ValidProjectID(m.Project) || !events.ValidSnapshotName(m.Name) {
		// Names go into Compute URL paths: never act on one that is not a
		// plain Compute name, whatever the registry holds.
		out := Outcome{Result: ResultSkipped, Why: fmt.Sprintf("invalid project or snapshot name %q/%q", m.Project, m.Name)}
		e.metrics.results.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(out.Result))))
		return out, nil
	}
	// Another delivery holds the lease, or took it between this
	// delivery's look and its first write (often a duplicate of this
	// message being worked on right now): look again a few times before
	// nacking; the other delivery usually finishes within seconds. Looking
	// again is what a redelivery would do: this delivery wrote nothing.
	steps := waitSteps(e.cfg.LeaseWait, leaseStep)
	for i := 0; ; i++ {
		c, err := e.claim(ctx, key, m, dry)
		if errors.Is(err, errBusy) && i < steps {
			if serr := e.cfg.Sleep(ctx, leaseStep); serr != nil {
				return Outcome{}, err
			}
			continue
		}
		if err != nil {
			return Outcome{}, err
		}
		if c.outcome != nil {
			e.metrics.results.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(c.outcome.Result))))
			return *c.outcome, nil
		}
		out, err := e.delete(ctx, c, dry)
		if errors.Is(err, errChanged) && !*c.taken && i < steps {
			if serr := e.cfg.Sleep(ctx, leaseStep); serr != nil {
				return out, err
			}
			continue
		}
		if err == nil && (out.Result == ResultDryRun || out.Result == ResultPending || out.Result == ResultSkipped) {
			e.metrics.results.Add(ctx, 1, metric.WithAttributes(attribute.String("result", string(out.Result))))
		}
		if err != nil {
			sctx, cancel := settleContext(ctx)
			defer cancel()
			return out, e.release(sctx, c, err, false)
		}
		return out, nil
	}
}

// claim looks whether this message may take the record's lease
// (lifecycle.StartDelete), or says why not; the lease itself is taken
// with the delivery's first write (change). A record the rules settle
// (nothing to delete) is written at once. A dry run writes nothing.
func (e *Engine) claim(ctx context.Context, key store.Key, m events.CleanupMessage, dry bool) (claim, error) {
	at := e.now()
	// Every claim is its own lease owner, so that two deliveries in one
	// instance never mistake each other's lease for their own.
	owner := fmt.Sprintf("%s/%d", e.cfg.Owner, e.claims.Add(1))
	var c claim
	var busy bool
	_, err := update(ctx, e.cfg.Store, key, store.TaskKey{SessionID: m.SessionID, TaskID: m.TaskID}, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		c, busy = claim{}, false
		next, st, err := e.cfg.Policy.StartDeleteFor(cur, t, m, owner, e.cfg.Lease, at)
		switch {
		case err != nil:
			return nil, err
		case st.Busy:
			busy = true
			return nil, nil
		case st.Done:
			res := ResultSkipped
			if st.Gone {
				res = ResultAlreadyGone
			}
			c.outcome = &Outcome{Result: res, State: st.State, Why: st.Why}
			if dry {
				return nil, nil
			}
			return next, nil
		}
		c.rec, c.lease = next, *st.Lease
		return nil, nil
	})
	if err != nil {
		return claim{}, fmt.Errorf("claim %s: %w", key, err)
	}
	if busy {
		return claim{}, fmt.Errorf("%s is being deleted by another delivery: %w: %w", key, ErrRetryLater, errBusy)
	}
	c.msg, c.taken = m, new(bool)
	return c, nil
}

// errBusy marks a claim refused because another delivery holds the lease.
var errBusy = errors.New("leased by another delivery")

// Steps of the short in-request waits (breaker, lease).
const (
	breakerStep = 250 * time.Millisecond
	leaseStep   = time.Second
)

// waitSteps is how many steps of step fit in wait. The waits count steps,
// not clock time, so that they end whatever the configured clock does.
func waitSteps(wait, step time.Duration) int { return int(wait / step) }

// waitBreaker returns at once unless the breaker refuses calls (open, or
// half-open with every probe taken); then it waits up to BreakerWait for
// it to let calls through, and otherwise asks for a redelivery.
func (e *Engine) waitBreaker(ctx context.Context) error {
	for i := 0; ; i++ {
		if !e.breakerRefuses() {
			return nil
		}
		if i >= waitSteps(e.cfg.BreakerWait, breakerStep) {
			return fmt.Errorf("compute circuit breaker %s: %w", e.breaker.State(), ErrRetryLater)
		}
		if err := e.cfg.Sleep(ctx, breakerStep); err != nil {
			return fmt.Errorf("compute circuit breaker %s: %w: %w", e.breaker.State(), ErrRetryLater, err)
		}
	}
}

// breakerRefuses reports whether a call now would be refused by the breaker.
func (e *Engine) breakerRefuses() bool {
	switch e.breaker.State() {
	case gobreaker.StateOpen:
		return true
	case gobreaker.StateHalfOpen:
		c := e.breaker.Counts()
		return c.Requests-min(c.TotalExclusions, c.Requests) >= e.cfg.BreakerProbes
	}
	return false
}

// call runs one Compute call through the breaker, the project's pacing
// (deletes) and its concurrency share.
// pre, when set, runs after every wait and right before the call: it is the
// last check of the rules (see arm), and an error from it stops the call.
func (e *Engine) call(ctx context.Context, op, project string, pre, fn func(ctx context.Context) error) error {
	// Wait for an open breaker before taking a slot, so that waiting
	// deliveries do not hold the slots of calls that could go out.
	if err := e.waitBreaker(ctx); err != nil {
		return err
	}
	p := e.pace(project)
	if err := e.takeSlot(ctx, p, op == opDelete); err != nil {
		return err
	}
	defer e.freeSlot(p)
	// The pacing wait may have outlasted a breaker change: check again, so
	// that the last check (pre) is not made for a call the breaker refuses.
	if err := e.waitBreaker(ctx); err != nil {
		return err
	}
	if pre != nil {
		if err := pre(ctx); err != nil {
			return err
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

// errStop wraps an error of a pre-call check: it ends the retries as is.
type errStop struct{ err error }

func (s errStop) Error() string { return s.err.Error() }
func (s errStop) Unwrap() error { return s.err }

// retryable runs fn until it succeeds, fails for good, or the budget ends.
// Transient, in-use and rate-limited answers are retried with exponential
// backoff and jitter; a rate-limited answer also waits for the next quota
// refill (if the budget allows) and pauses this instance's other deletes of
// the same project (Compute's quotas are per project).
// refused, when set, is told of answers that prove the call was not
// executed (quota, in use), before the wait.
func (e *Engine) retryable(ctx context.Context, op, project string, attempts *int, pre func(ctx context.Context) error, refused func(), fn func(ctx context.Context) error) error {
	b := e.cfg.Backoff()
	wrapped := pre
	if pre != nil {
		wrapped = func(ctx context.Context) error {
			if err := pre(ctx); err != nil {
				return errStop{err}
			}
			return nil
		}
	}
	// sent is when the last call went out: a rate-limited answer is about
	// the quota minute the call reached Compute in, which may have ended
	// before the answer came back.
	var sent time.Time
	timed := func(ctx context.Context) error {
		sent = e.cfg.Now()
		return fn(ctx)
	}
	for {
		*attempts++
		sent = time.Time{}
		err := e.call(ctx, op, project, wrapped, timed)
		var stop errStop
		if err == nil || errors.Is(err, ErrRetryLater) || errors.As(err, &stop) {
			return err
		}
		class := gce.Classify(err)
		switch class {
		case gce.ClassTransient:
		case gce.ClassInUse, gce.ClassRateLimited:
			if refused != nil {
				refused()
			}
		default:
			return err
		}
		d, stop2 := b.Next()
		if class == gce.ClassRateLimited {
			// The quota refills after the minute the call was sent in (and
			// counted in, give or take the way there): an answer that
			// arrives after the next minute began must not pause the
			// project until the minute after that (the pacing benchmark
			// lost a whole minute of one project so).
			if sent.IsZero() {
				sent = e.cfg.Now()
			}
			refill := e.cfg.QuotaRefill(sent)
			if op == opDelete {
				// The delete quota (Compute's write group) is spent; a spent
				// read quota is another group and leaves deletes alone.
				e.pace(project).pauseUntil(refill)
			}
			d = max(d, refill.Sub(e.cfg.Now()))
		}
		if dl, ok := ctx.Deadline(); stop2 || (ok && e.cfg.Now().Add(d).After(dl)) {
			return fmt.Errorf("%s: giving up for now after %d attempts: %w: %w", op, *attempts, ErrRetryLater, err)
		}
		if err := e.cfg.Sleep(ctx, d); err != nil {
			return fmt.Errorf("%s: %w: %w", op, ErrRetryLater, err)
		}
	}
}

// pace is one project's pacing in this instance: its delete rate, the
// pause after a rate-limited answer, and its share of the call slots.
// Compute counts rate quotas per project, so one project's spent quota
// never slows another project's deletes.
type pace struct {
	limiter *rate.Limiter
	// quotaUntil pauses the project's delete calls until the next quota
	// refill after a rate-limit answer (unix nanoseconds), so that the
	// instance stops spending calls on a quota that is already spent.
	quotaUntil atomic.Int64
	slots      chan struct{}
}

func (p *pace) pauseUntil(t time.Time) {
	for {
		cur := p.quotaUntil.Load()
		if cur >= t.UnixNano() || p.quotaUntil.CompareAndSwap(cur, t.UnixNano()) {
			return
		}
	}
}

func (p *pace) pausedUntil() time.Time { return time.Unix(0, p.quotaUntil.Load()) }

// pace returns the pacing of project, made on first use.
func (e *Engine) pace(project string) *pace {
	e.pacesMu.Lock()
	defer e.pacesMu.Unlock()
	p := e.paces[project]
	if p == nil {
		r := e.cfg.Rate
		if pr, ok := e.cfg.RateByProject[project]; ok && pr > 0 {
			r = pr
		}
		p = &pace{limiter: rate.NewLimiter(rate.Limit(r), 1), slots: make(chan struct{}, e.share)}
		e.paces[project] = p
	}
	return p
}

// takeSlot takes one of the project's call slots and one of the
// instance's. A delete first waits for the project's pace — its quota
// pause and its rate limiter — holding no slot, so a paused or throttled
// project never holds slots that other projects' calls need; and it looks
// at the pause again once it holds the slots, so that a pause another
// delivery started meanwhile is not spent on a call the quota refuses. A
// call whose token came before its slot may go out a little later than
// the token said; Compute counts whole minutes, so that costs nothing as
// long as the minute's total stays within the quota.
func (e *Engine) takeSlot(ctx context.Context, p *pace, paced bool) error {
	// A few looks at most: with a clock that does not move (tests), the
	// call goes out and the quota's answer decides.
	for look := 0; ; look++ {
		if paced {
			if err := e.waitPace(ctx, p); err != nil {
				return fmt.Errorf("wait for delete quota: %w: %w", ErrRetryLater, err)
			}
		}
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case e.sem <- struct{}{}:
		case <-ctx.Done():
			<-p.slots
			return ctx.Err()
		}
		if !paced || look >= 3 || !p.pausedUntil().After(e.cfg.Now()) {
			return nil
		}
		e.freeSlot(p)
	}
}

func (e *Engine) freeSlot(p *pace) {
	<-e.sem
	<-p.slots
}

// waitPace waits for a project's quota pause to end and for its rate
// limiter.
func (e *Engine) waitPace(ctx context.Context, p *pace) error {
	if until := p.pausedUntil(); until.After(e.cfg.Now()) {
		if dl, ok := ctx.Deadline(); ok && until.Sub(e.cfg.Now()) > time.Until(dl) {
			// The quota refills after this request's deadline: answer now
			// rather than hold the request until it ends.
			return fmt.Errorf("quota paused until %s, after the request's deadline", until.Format(time.TimeOnly))
		}
		if err := e.cfg.Sleep(ctx, until.Sub(e.cfg.Now())); err != nil {
			return err
		}
	}
	// The limiter runs on the engine's clock (Now and Sleep), like every
	// other wait of the engine, so that one clock can drive them all.
	now := e.cfg.Now()
	r := p.limiter.ReserveN(now, 1)
	if !r.OK() {
		return errors.New("rate limiter refuses a single token")
	}
	d := r.DelayFrom(now)
	if d <= 0 {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok && d > time.Until(dl) {
		// As rate.Limiter.Wait does: no wait past the request's deadline.
		r.CancelAt(now)
		return fmt.Errorf("rate limit: the next delete call of the project is %s away, after the request's deadline", d.Round(time.Millisecond))
	}
	if err := e.cfg.Sleep(ctx, d); err != nil {
		r.CancelAt(e.cfg.Now())
		return err
	}
	return nil
}

// opWait is how long to wait for a delete operation now: OpWait, or less
// when the request's deadline leaves less (at least a second).
func (e *Engine) opWait(ctx context.Context) time.Duration {
	wait := e.cfg.OpWait
	if dl, ok := ctx.Deadline(); ok {
		// Keep the reserve for recording the outcome, but wait at least a
		// second (or the configured wait, if shorter) for the operation.
		wait = min(wait, max(time.Until(dl)-settleReserve, time.Second))
	}
	return wait
}

// settleReserve is the time kept, at the end of a request's budget, for
// recording what happened; settleContext bounds those writes by it even
// when the request's own deadline has passed.
const settleReserve = 3 * time.Second

func settleContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), settleReserve)
}

// errAborted ends a delete whose rules no longer hold at the last check.
var errAborted = errors.New("delete aborted by the last check")

// delete re-reads the snapshot, checks ownership and identity, deletes and
// confirms. Right before every DELETE (after every wait) it checks the
// rules again in a registry transaction (lifecycle.Arm); once a DELETE may
// have gone out, the record stays deleting until the deletion is confirmed.
func (e *Engine) delete(ctx context.Context, c claim, dry bool) (Outcome, error) {
	rec := c.rec
	out := Outcome{}
	var snap gce.Snapshot
	err := e.retryable(ctx, "get snapshot", rec.Project, &out.Attempts, nil, nil, func(ctx context.Context) error {
		var err error
		snap, err = e.cfg.Compute.Get(ctx, rec.Project, rec.Name)
		return err
	})
	switch {
	case gce.Classify(err) == gce.ClassNotFound:
		if dry {
			return Outcome{Result: ResultDryRun, State: rec.State, Why: "already gone"}, nil
		}
		return e.confirm(ctx, c, ResultAlreadyGone, "not found before delete", out.Attempts)
	case errors.Is(err, ErrRetryLater):
		return out, err
	case err != nil && gce.Classify(err) == gce.ClassPermanent:
		return e.fail(ctx, c, "read before delete: "+err.Error(), out.Attempts, err)
	case err != nil:
		return out, fmt.Errorf("read before delete: %w: %w", ErrRetryLater, err)
	}
	// The sizes of this read are recorded by the last check (the arm, right
	// before the DELETE): the record's size at deletion.
	seen := lifecycle.Observed{ComputeID: snap.ID, CreationTime: snap.CreationTime, Fresh: true, Size: snap.Size(e.now())}
	if why, other := e.cfg.Policy.OtherSnapshot(rec, seen); other {
		if dry {
			return Outcome{Result: ResultDryRun, State: rec.State, Why: "would close: " + why}, nil
		}
		return e.vanish(ctx, c, why, out.Attempts)
	}
	if got, ok := snap.Labels[e.cfg.SessionLabel]; !ok || got != rec.SessionID {
		why := fmt.Sprintf("label %s=%q does not match session %q", e.cfg.SessionLabel, got, rec.SessionID)
		if !ok {
			why = fmt.Sprintf("label %s missing (session %q)", e.cfg.SessionLabel, rec.SessionID)
		}
		if dry {
			return Outcome{Result: ResultDryRun, State: rec.State, Why: "would refuse: " + why}, nil
		}
		return e.refuse(ctx, c, why, out.Attempts)
	}
	if dry {
		return e.dryRun(ctx, rec)
	}
	if snap.Status == "DELETING" {
		// A delete is already running (an earlier attempt's): confirm it
		// rather than issuing a second one.
		return e.confirmGone(ctx, c, out.Attempts)
	}
	var aborted *Outcome
	arm := func(ctx context.Context) error {
		at := e.now()
		var res lifecycle.ArmResult
		// The claim, when not taken yet, is taken here: no wait between the
		// two, and this is right before the DELETE.
		_, err := e.change(ctx, c, true, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
			next, r, err := e.cfg.Policy.ArmFor(cur, t, c.lease, seen, e.cfg.Lease, at)
			res = r
			return next, err
		})
		seen.Fresh = false // from here on a DELETE may have gone out
		if err != nil {
			return fmt.Errorf("last check before delete: %w", err)
		}
		if !res.OK {
			o := Outcome{Result: ResultSkipped, State: res.State, Why: "not deleted: " + res.Why}
			if res.Vanished {
				o.Result = ResultAlreadyGone
			}
			aborted = &o
			return errAborted
		}
		return nil
	}
	disarm := func() {
		sctx, cancel := settleContext(ctx)
		defer cancel()
		_, _ = e.change(sctx, c, false, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			return e.cfg.Policy.DisarmFor(cur, c.lease, e.now())
		})
		seen.Fresh = true // Compute refused it: no DELETE is in effect
	}
	reqID := gce.RequestID(rec.Project, rec.Name, snap.ID, rec.Attempt)
	var opName string
	err = e.retryable(ctx, opDelete, rec.Project, &out.Attempts, arm, disarm, func(ctx context.Context) error {
		var err error
		opName, err = e.cfg.Compute.Delete(ctx, rec.Project, rec.Name, reqID)
		return err
	})
	if aborted != nil {
		aborted.Attempts = out.Attempts
		if aborted.State == store.Deleting {
			// The rules no longer allow the delete, but an earlier attempt
			// may have gone out: give the lease up and ask for a
			// redelivery, whose fresh read settles the record.
			sctx, cancel := settleContext(ctx)
			defer cancel()
			return *aborted, e.release(sctx, c,
				fmt.Errorf("%s (a DELETE may have gone out; a redelivery reads it again): %w", aborted.Why, ErrRetryLater), false)
		}
		return *aborted, nil
	}
	if err == nil {
		// Accepted: from here on the record is never rolled back.
		// Wait for the operation only as long as the request leaves time
		// to record the outcome; a delete not confirmed by then is left
		// pending, for a redelivery or the sweep.
		done, werr := e.cfg.Compute.WaitOperation(ctx, rec.Project, opName, e.opWait(ctx))
		// A poll that failed transiently (a 503 of a sick API) is polled
		// again while the request has time: nacking it would redeliver a
		// delete that Compute has accepted.
		for i := 0; i < 3 && !done && werr != nil && gce.Classify(werr) == gce.ClassTransient && e.opWait(ctx) > time.Second; i++ {
			if e.cfg.Sleep(ctx, 500*time.Millisecond) != nil {
				break
			}
			done, werr = e.cfg.Compute.WaitOperation(ctx, rec.Project, opName, e.opWait(ctx))
		}
		switch {
		case done && werr == nil:
			return e.confirm(ctx, c, ResultDeleted, "deleted", out.Attempts)
		case done && gce.Classify(werr) == gce.ClassNotFound:
			return e.confirm(ctx, c, ResultAlreadyGone, "not found at delete", out.Attempts)
		case done && gce.Classify(werr) == gce.ClassPermanent:
			return e.fail(ctx, c, werr.Error(), out.Attempts, werr)
		case done:
			// The operation finished with an error a retry may fix: the
			// snapshot is still there, and a new attempt may delete it.
			return out, e.release(ctx, c, fmt.Errorf("delete operation: %w: %w", ErrRetryLater, werr), true)
		case werr != nil:
			// Reading the operation failed: the delete stays accepted, and a
			// redelivery (lease given up) confirms it soon, not the sweep.
			if _, err := e.pending(ctx, c, opName, out.Attempts); err != nil {
				return out, err
			}
			return Outcome{Result: ResultPending, State: store.Deleting, Attempts: out.Attempts},
				fmt.Errorf("confirm delete of %s: %w: %w", rec.Key(), ErrRetryLater, werr)
		}
		return e.pending(ctx, c, opName, out.Attempts)
	}
	switch class := gce.Classify(err); {
	case class == gce.ClassNotFound:
		return e.confirm(ctx, c, ResultAlreadyGone, "not found at delete", out.Attempts)
	case errors.Is(err, ErrRetryLater):
		return out, err
	case class == gce.ClassPermanent:
		return e.fail(ctx, c, err.Error(), out.Attempts, err)
	default:
		return out, fmt.Errorf("delete: %w: %w", ErrRetryLater, err)
	}
}

// confirmGone polls a snapshot that is already being deleted.
func (e *Engine) confirmGone(ctx context.Context, c claim, attempts int) (Outcome, error) {
	deadline := e.cfg.Now().Add(e.cfg.OpWait)
	for e.cfg.Now().Before(deadline) {
		if err := e.cfg.Sleep(ctx, time.Second); err != nil {
			break
		}
		attempts++
		_, err := e.cfg.Compute.Get(ctx, c.rec.Project, c.rec.Name)
		if gce.Classify(err) == gce.ClassNotFound {
			return e.confirm(ctx, c, ResultAlreadyGone, "deleted by an earlier attempt", attempts)
		}
	}
	return e.pending(ctx, c, c.rec.Operation, attempts)
}

// pending records a delete that was accepted but not confirmed in time: the
// record stays deleting (its lease runs out) and the sweep, or a
// redelivery, confirms it later instead of holding this request.
func (e *Engine) pending(ctx context.Context, c claim, opName string, attempts int) (Outcome, error) {
	at := e.now()
	_, err := e.change(ctx, c, false, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		return e.cfg.Policy.AcceptFor(cur, c.lease, opName, at)
	})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Result: ResultPending, State: store.Deleting, Why: "delete accepted, not confirmed within the wait; the sweep confirms it", Attempts: attempts}, nil
}

func (e *Engine) dryRun(ctx context.Context, rec *store.Snapshot) (Outcome, error) {
	// Leave nothing claiming work that dry-run never does.
	at := e.now()
	_, err := update(ctx, e.cfg.Store, rec.Key(), rec.TaskKey(), func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		if cur == nil || cur.State != store.CleanupPending {
			return nil, nil
		}
		return e.cfg.Policy.SettleStale(cur, t, "dry run: would delete", at)
	})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Result: ResultDryRun, State: rec.State, Why: "would delete"}, nil
}

// confirm records that the snapshot is gone (lifecycle.Confirm).
func (e *Engine) confirm(ctx context.Context, c claim, res Result, why string, attempts int) (Outcome, error) {
	by := "snapsweep"
	if res == ResultAlreadyGone {
		by = "already-gone"
	}
	return e.record(ctx, c, res, why, attempts, func(cur *store.Snapshot, at time.Time) (*store.Snapshot, error) {
		return e.cfg.Policy.ConfirmFor(cur, by, at)
	})
}

// refuse records a failed ownership check (lifecycle.Refuse).
func (e *Engine) refuse(ctx context.Context, c claim, why string, attempts int) (Outcome, error) {
	return e.record(ctx, c, ResultRefused, why, attempts, func(cur *store.Snapshot, at time.Time) (*store.Snapshot, error) {
		return e.cfg.Policy.RefuseFor(cur, c.lease, why, at)
	})
}

// fail records a permanent error (lifecycle.Fail).
func (e *Engine) fail(ctx context.Context, c claim, why string, attempts int, cause error) (Outcome, error) {
	return e.record(ctx, c, ResultFailed, why, attempts, func(cur *store.Snapshot, at time.Time) (*store.Snapshot, error) {
		return e.cfg.Policy.FailFor(cur, c.lease, why, string(gce.Classify(cause)), at)
	})
}

// vanish closes a record whose snapshot is gone: the name belongs to
// another snapshot now (lifecycle.Vanish).
func (e *Engine) vanish(ctx context.Context, c claim, why string, attempts int) (Outcome, error) {
	return e.record(ctx, c, ResultAlreadyGone, why, attempts, func(cur *store.Snapshot, at time.Time) (*store.Snapshot, error) {
		if !c.lease.Holds(cur) {
			return nil, nil
		}
		return e.cfg.Policy.Vanished(cur, why, at)
	})
}

// record writes a final outcome of this claim with one lifecycle
// transition, then counts it and has the session judged.
func (e *Engine) record(ctx context.Context, c claim, res Result, why string, attempts int, tr func(cur *store.Snapshot, at time.Time) (*store.Snapshot, error)) (Outcome, error) {
	at := e.now()
	var final *store.Snapshot
	_, err := e.change(ctx, c, false, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
		next, err := tr(cur, at)
		if next != nil {
			next.Retries = cur.Retries + max(attempts-1, 0)
		}
		final = next
		return next, err
	})
	if err != nil {
		return Outcome{}, fmt.Errorf("record %s of %s: %w", res, c.rec.Key(), err)
	}
	if final == nil {
		return Outcome{Result: res, State: c.rec.State, Why: why + " (the record had changed; left as is)", Attempts: attempts}, nil
	}
	e.metrics.result(ctx, final, res, at)
	if e.cfg.Judge != nil {
		// An error is not this message's: the outcome is recorded, and
		// the judgement is redone by the next finished snapshot or the sweep.
		_, _ = e.cfg.Judge.JudgeSession(ctx, final.SessionID)
	}
	return Outcome{Result: res, State: final.State, Why: why, Attempts: attempts}, nil
}

// release is the engine's rollback: it gives a claim up after a failure a
// retry may fix, putting the record back to cleanup_pending so the
// redelivery (or the sweep) can claim it again at once. A record whose
// DELETE may have gone out is not released (lifecycle.Release refuses it),
// unless Compute said the delete definitely did not happen (definite).
func (e *Engine) release(ctx context.Context, c claim, cause error, definite bool) error {
	if !*c.taken {
		// The claim was never taken: there is nothing to give back.
		return cause
	}
	at := e.now()
	_, err := updateOnly(ctx, e.cfg.Store, c.rec.Key(), func(cur *store.Snapshot) (*store.Snapshot, error) {
		return e.cfg.Policy.ReleaseFor(cur, c.lease, cause.Error(), string(gce.Classify(cause)), definite, at)
	})
	if err != nil {
		return errors.Join(cause, fmt.Errorf("release claim of %s: %w", c.rec.Key(), err))
	}
	return cause
}
