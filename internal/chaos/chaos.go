// Package chaos is snapsweep's chaos run (`make chaos`): several `snapsweep
// serve` processes on the Firestore and Pub/Sub emulators and a faulty
// Compute fake, fed a duplicated, shuffled stream of migration events while
// Compute fails, quotas bite, Firestore freezes and an instance is killed;
// then the faults clear, the sweep runs until there is nothing left to do,
// and the end state is checked against the rules of the contract.
//
// The driver plays Pub/Sub push itself (pull subscriptions, concurrent
// posts of push envelopes, ack on 2xx, nack with backoff otherwise): the
// emulator's own push delivers about two messages at a time, far below
// production concurrency.
//
// It drives the service only through its public inputs (push requests,
// the scheduler endpoint, Compute through the fake) and reads the end
// state; it must not reach into the service's packages to change state.
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"

	"github.com/snapsweep/snapsweep/internal/wait"
	"github.com/snapsweep/snapsweep/store"
)

// Config is one chaos run.
type Config struct {
	// Bin is the snapsweep binary (built once by scripts/chaos.sh).
	Bin string
	// LogDir receives every process's log and summary.json.
	LogDir string
	// Project is the GCP project id of the run (Firestore, Pub/Sub and the
	// snapshots); a fresh one per run keeps runs apart on shared emulators.
	Project string
	// FirestorePGID is the process group of the Firestore emulator (its
	// session leader's pid, as scripts/emulators.sh records it); 0 skips
	// the freeze.
	FirestorePGID int

	// DeleteRates is SNAPSWEEP_DELETE_RATE of each serve instance; their
	// number is the number of instances.
	DeleteRates []float64
	// Quota is the fake's delete quota per wall-clock minute and project
	// (Compute counts per minute); FailRate
	// and FailCode its random failures; OpLatency how long a delete
	// operation runs; SlowOpFor how long the operations of the
	// Workload.SlowOps snapshots report RUNNING.
	Quota     int
	FailRate  float64
	FailCode  int
	OpLatency time.Duration
	SlowOpFor time.Duration

	// Inflight is the largest push window (pushes in flight) per
	// subscription; FixedWindow keeps it there instead of adapting it to
	// the success rate as Pub/Sub does. AckDeadline is the HTTP timeout of
	// one push; BackoffMin/Max the nack redelivery delay.
	Inflight               int
	FixedWindow            bool
	AckDeadline            time.Duration
	BackoffMin, BackoffMax time.Duration

	Workload WorkloadConfig
	// Waves and WaveEvery spread the publishing of the deliveries.
	Waves     int
	WaveEvery time.Duration

	// FreezeAt and FreezeFor time the Firestore freeze (from the first
	// publish); KillAt the SIGKILLs of instance Victim, each restarted
	// after RestartAfter; FaultsFor when the Compute faults are cleared.
	FreezeAt, FreezeFor time.Duration
	KillAt              []time.Duration
	Victim              int
	RestartAfter        time.Duration
	FaultsFor           time.Duration
	// FaultsMax bounds the fault phase beyond FaultsFor: the faults stay on
	// until the quota and in-use paths were exercised and half the eligible
	// snapshots are deleted, at most this much longer.
	FaultsMax time.Duration
	// MinFaultThroughput is the share of the granted delete quota the
	// service must use while the Compute faults are on (0: report only).
	MinFaultThroughput float64

	// DrainTimeout bounds the wait, after the faults, for every event
	// message to be acked; SettleTimeout the sweeps until quiet after it.
	DrainTimeout  time.Duration
	SettleTimeout time.Duration
	// Lease is SNAPSWEEP_DELETE_LEASE (how long a cleanup claim holds a
	// snapshot; a killed instance's claims block redeliveries that long)
	// and StuckAfter SNAPSWEEP_SWEEP_STUCK_AFTER (how old cleanup_pending or
	// deleting must be before the sweep re-drives it). The production
	// defaults (2m, 10m) would make the run long.
	Lease, StuckAfter time.Duration
	// RSSLimitMB is the peak RSS (VmHWM) each serve process must stay under.
	RSSLimitMB int

	Out io.Writer
}

// Result is what a run found.
type Result struct {
	Project    string         `json:"project"`
	Seed       uint64         `json:"seed"`
	Workload   map[string]int `json:"workload"`
	Invariants []Invariant    `json:"invariants"`
	Timeline   []string       `json:"timeline"`
	Events     pushStats      `json:"eventPushes"`
	Cleanups   pushStats      `json:"cleanupPushes"`
	Compute    any            `json:"computeCalls"`
	Sweeps     int            `json:"sweeps"`
	// SweepWork sums what the sweeps found and did.
	SweepWork map[string]int `json:"sweepWork"`
	// Pending counts the cleanups the engine left pending (delete issued,
	// not confirmed in time), from the serve logs.
	Pending int `json:"pendingCleanups"`
	// FaultPhase is the cleanup throughput while the Compute faults were
	// on, against the granted quota, and the breakers' open time.
	FaultPhase *FaultThroughput `json:"faultPhase,omitempty"`
	Quiet      bool             `json:"quiet"`
	DurationS  float64          `json:"durationSeconds"`
	Errors     []string         `json:"errors,omitempty"`
}

// coverage is what the faults actually hit: a run whose faults hit
// nothing proves nothing.
type coverage struct {
	Frozen                       time.Duration
	FreezeEvents, FreezeCleanups int
	KillCleanups                 []int
	Compute                      computeStats
}

// computeStats is the fake's GET /fake/calls.
type computeStats struct {
	Calls       int            `json:"Calls"`
	ByStatus    map[string]int `json:"ByStatus"`
	ByMethod    map[string]int `json:"ByMethod"`
	QuotaErrors int            `json:"QuotaErrors"`
	Deleted     int            `json:"Deleted"`
}

// OK reports whether every invariant held and nothing went wrong.
func (r *Result) OK() bool {
	if len(r.Errors) > 0 || len(r.Invariants) == 0 {
		return false
	}
	for _, iv := range r.Invariants {
		if !iv.OK {
			return false
		}
	}
	return true
}

type runner struct {
	cfg   Config
	start time.Time
	res   *Result
	cov   coverage

	mu sync.Mutex

	ps        *pubsub.Client
	reg       *store.Firestore
	fakeURL   string
	instances []*instance
	events    *pusher
	cleanups  *pushGroup
}

func (r *runner) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.cfg.Out, "[%6.1fs] %s\n", time.Since(r.start).Seconds(), line)
}

// mark logs a timeline entry (kept in the result).
func (r *runner) mark(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	r.logf("%s", line)
	r.mu.Lock()
	r.res.Timeline = append(r.res.Timeline, fmt.Sprintf("%6.1fs %s", time.Since(r.start).Seconds(), line))
	r.mu.Unlock()
}

func (r *runner) fail(err error) {
	r.logf("ERROR %v", err)
	r.mu.Lock()
	r.res.Errors = append(r.res.Errors, err.Error())
	r.mu.Unlock()
}

// Run runs the chaos scenario and checks the invariants. The error is for
// a run that could not be carried out; failed invariants are in the result.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	r := &runner{cfg: cfg, start: time.Now(), res: &Result{Project: cfg.Project, Seed: cfg.Workload.Seed}}
	defer func() { r.res.DurationS = time.Since(r.start).Seconds() }()
	for _, v := range []string{"FIRESTORE_EMULATOR_HOST", "PUBSUB_EMULATOR_HOST"} {
		if os.Getenv(v) == "" {
			return r.res, fmt.Errorf("%s is not set: run through scripts/chaos.sh (make chaos)", v)
		}
	}
	if len(cfg.DeleteRates) < 2 {
		return r.res, errors.New("at least two serve instances are needed")
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return r.res, err
	}
	err := r.run(ctx)
	r.res.DurationS = time.Since(r.start).Seconds()
	if werr := r.writeSummary(); werr != nil && err == nil {
		err = werr
	}
	return r.res, err
}

func (r *runner) run(ctx context.Context) error {
	cfg := r.cfg
	var sum float64
	for _, d := range cfg.DeleteRates {
		sum += d
	}
	window := "adaptive push window up to"
	if cfg.FixedWindow {
		window = "fixed push window of"
	}
	r.mark("chaos run: project %s, seed %d, %d serve instances (delete rates %v/s, sum %g/s), fake quota %d deletes/min, %.0f%% Compute %d, %s %d per subscription, logs in %s",
		cfg.Project, cfg.Workload.Seed, len(cfg.DeleteRates), cfg.DeleteRates, sum, cfg.Quota, cfg.FailRate*100, cfg.FailCode, window, cfg.Inflight, cfg.LogDir)
	if cfg.Quota > 0 && sum*60 <= float64(cfg.Quota) {
		r.logf("warning: the delete rates (sum %g/s, %g/min) do not exceed the quota (%d/min)", sum, sum*60, cfg.Quota)
	}

	ps, evSub, routes, err := newPubSub(ctx, cfg.Project, []string{cfg.Project}, cfg.AckDeadline)
	if err != nil {
		return err
	}
	defer ps.Close()
	r.ps = ps

	// Firestore, read through the same store code as the service.
	fs, err := firestore.NewClient(ctx, cfg.Project)
	if err != nil {
		return fmt.Errorf("firestore client: %w", err)
	}
	defer fs.Close()
	r.reg = store.NewFirestore(fs)

	// The Compute fake, faulty from the start.
	fake, fakeURL, err := startFake(ctx, cfg.Bin, cfg.LogDir, "--latency", cfg.OpLatency.String(),
		"--fail-rate", strconv.FormatFloat(cfg.FailRate, 'g', -1, 64), "--fail-code", strconv.Itoa(cfg.FailCode),
		"--quota", strconv.Itoa(cfg.Quota), "--seed", strconv.FormatUint(cfg.Workload.Seed, 10))
	if err != nil {
		return err
	}
	defer fake.stop(5 * time.Second)
	r.fakeURL = fakeURL

	// The workload, and its snapshots in Compute.
	w := Generate(cfg.Workload)
	r.res.Workload = w.Counts()
	r.mark("workload: %v", w.Counts())
	if err := r.seedCompute(ctx, w); err != nil {
		return err
	}

	// The serve instances.
	defer func() {
		for _, in := range r.instances {
			in.stop()
		}
	}()
	for i, rate := range cfg.DeleteRates {
		in, err := startServe(ctx, i, cfg.Bin, cfg.LogDir, serveEnv(cfg.Project, r.fakeURL, rate,
			"SNAPSWEEP_DELETE_LEASE="+cfg.Lease.String(), "SNAPSWEEP_SWEEP_STUCK_AFTER="+cfg.StuckAfter.String()))
		if in != nil {
			r.instances = append(r.instances, in)
		}
		if err != nil {
			return err
		}
		r.logf("%s up on :%d (pid %d, delete rate %g/s)", in.name, in.port, in.cur.pid(), rate)
	}

	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	var bgWG sync.WaitGroup
	defer bgWG.Wait()
	defer stopBG()
	bgWG.Go(func() { r.sampleMemory(bg) })

	targets := func() []*instance { return r.instances }
	r.events = newPusher("migration-events", "/pubsub/migration-events", evSub, ps.SubscriptionAdminClient,
		targets, cfg.Inflight, cfg.FixedWindow, cfg.AckDeadline, cfg.BackoffMin, cfg.BackoffMax, nil)
	r.cleanups = newCleanupPushers(routes, ps.SubscriptionAdminClient,
		targets, cfg.Inflight, cfg.FixedWindow, cfg.AckDeadline, cfg.BackoffMin, cfg.BackoffMax)
	pushCtx, stopPush := context.WithCancel(ctx)
	var pushWG sync.WaitGroup
	pushWG.Go(func() { r.events.run(pushCtx) })
	pushWG.Go(func() { r.cleanups.run(pushCtx) })
	defer pushWG.Wait()
	defer stopPush()
	bgWG.Go(func() { r.progress(bg) })

	// Chaos: publish in waves while Firestore freezes and an instance dies.
	t0 := time.Now()
	samples := &sampler{}
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var sampleWG sync.WaitGroup
	sampleWG.Go(func() { samples.run(sampleCtx, r.fakeURL) })
	defer sampleWG.Wait()
	defer stopSampling()
	var chaos sync.WaitGroup
	chaos.Go(func() {
		if err := r.publish(ctx, w); err != nil {
			r.fail(err)
		}
	})
	var resume func()
	var resumeMu sync.Mutex
	defer func() {
		resumeMu.Lock()
		defer resumeMu.Unlock()
		if resume != nil {
			resume()
		}
	}()
	if cfg.FirestorePGID > 0 && cfg.FreezeFor > 0 {
		chaos.Go(func() {
			// Mid-run: while events and cleanups are being pushed.
			r.await(ctx, t0.Add(cfg.FreezeAt), time.Minute, "event and cleanup pushes in flight for the freeze", func() bool {
				return r.events.Active() > 0 && r.cleanups.Active() > 0
			})
			if ctx.Err() != nil {
				return
			}
			ev, cl := r.events.Active(), r.cleanups.Active()
			members, res, err := freeze(cfg.FirestorePGID)
			if err != nil {
				r.fail(fmt.Errorf("freeze Firestore: %w", err))
				return
			}
			resumeMu.Lock()
			resume = res
			resumeMu.Unlock()
			r.cov.FreezeEvents, r.cov.FreezeCleanups = int(ev), int(cl)
			r.mark("Firestore emulator frozen (SIGSTOP process group %d: %s) with %d event and %d cleanup pushes in flight",
				cfg.FirestorePGID, describe(members), ev, cl)
			sleepUntil(ctx, time.Now().Add(cfg.FreezeFor))
			res()
			r.cov.Frozen = cfg.FreezeFor
			r.mark("Firestore emulator resumed (SIGCONT) after %s", cfg.FreezeFor)
		})
	} else {
		r.mark("no Firestore emulator process group given: skipping the freeze")
	}
	chaos.Go(func() { r.killLoop(ctx, t0) })
	chaos.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	// Clear the faults once they have bitten: half the eligible snapshots
	// deleted under them and the quota and in-use paths exercised (or
	// FaultsMax on; faults-exercised then names what was not).
	eligible := r.res.Workload["eligible"]
	var st computeStats
	r.await(ctx, t0.Add(cfg.FaultsFor), cfg.FaultsMax, "half the eligible snapshots deleted and the quota and in-use paths exercised under the faults", func() bool {
		if getJSON(ctx, r.fakeURL+"/fake/calls", &st) != nil {
			return false
		}
		quota := cfg.Quota == 0 || st.QuotaErrors > 0
		inUse := cfg.Workload.InUse == 0 || st.ByStatus["400"] > 0
		return st.Deleted*2 >= eligible && quota && inUse
	})
	if err := getJSON(ctx, r.fakeURL+"/fake/calls", &st); err != nil {
		return fmt.Errorf("read the fake's calls: %w", err)
	}
	r.cov.Compute = st
	cleared := time.Now()
	stopSampling()
	sampleWG.Wait()
	samples.add(callSample{At: cleared, Deleted: st.Deleted, DeleteCalls: st.ByMethod["snapshots.delete"], QuotaErrors: st.QuotaErrors})
	fp := throughput(samples.all(), cfg.Quota, cleared)
	fp.BreakerOpen = map[string]time.Duration{}
	for _, in := range r.instances {
		d, err := breakerOpen(in.log, fp.Start, cleared)
		if err != nil {
			r.fail(fmt.Errorf("read %s's breaker changes: %w", in.name, err))
		}
		fp.BreakerOpen[in.name] = d
	}
	r.res.FaultPhase = &fp
	zero := 0
	var zeroF float64
	if err := postJSON(ctx, r.fakeURL+"/fake/faults", map[string]any{"failRate": zeroF, "quota": zero}, nil); err != nil {
		return fmt.Errorf("clear faults: %w", err)
	}
	r.mark("Compute faults cleared (fail rate 0, no quota) after %d calls under them: %d answered %d, %d over quota, %d in use or not ready (400); %d of %d eligible snapshots deleted so far",
		st.Calls, st.ByStatus[strconv.Itoa(cfg.FailCode)], cfg.FailCode, st.QuotaErrors, st.ByStatus["400"], st.Deleted, eligible)

	r.mark("fault phase: %s", fp)

	r.settle(ctx, w)

	stopPush()
	pushWG.Wait()
	r.res.Events, r.res.Cleanups = r.events.stats(), r.cleanups.stats()
	r.logf("event pushes:   %s", r.res.Events)
	r.logf("cleanup pushes: %s (by subscription: %s)", r.res.Cleanups, r.cleanups.byRoute())
	var calls map[string]any
	if err := getJSON(ctx, r.fakeURL+"/fake/calls", &calls); err == nil {
		r.res.Compute = calls
		b, _ := json.Marshal(calls)
		r.logf("compute calls:  %s", b)
	}
	for _, in := range r.instances {
		if err := in.crashed(); err != nil {
			r.fail(err)
		}
		in.sample()
		r.res.Pending += countLines(in.log, `"message":"cleanup pending"`)
	}
	r.logf("sweeps: %d, found and did in all: %v; cleanups left pending by the engine (from the logs): %d",
		r.res.Sweeps, r.res.SweepWork, r.res.Pending)

	es, err := readEndState(ctx, r.fakeURL, r.reg, w)
	if err != nil {
		return err
	}
	r.res.Invariants = checkInvariants(w, es, r.instances, cfg.RSSLimitMB, r.events.ackedCount(), len(w.Deliveries))
	r.res.Invariants = append(r.res.Invariants, r.cov.check(cfg), checkFaultThroughput(fp, cfg.MinFaultThroughput))
	return nil
}

// countLines counts the lines of a file that contain sub.
func countLines(path, sub string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(b), sub)
}

func describe(members map[int]string) string {
	var parts []string
	for pid, comm := range members {
		parts = append(parts, fmt.Sprintf("%s[%d]", comm, pid))
	}
	return strings.Join(parts, " ")
}

// serveEnv is the environment of one serve instance: the caller's (for the
// emulator variables and PATH) without any snapsweep setting, plus the run's
// and extra (KEY=value).
func serveEnv(project, fakeURL string, rate float64, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "SNAPSWEEP_") || k == "PORT" || k == "GOOGLE_CLOUD_PROJECT" || strings.HasPrefix(k, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	env = append(env,
		"GOOGLE_CLOUD_PROJECT="+project,
		"SNAPSWEEP_COMPUTE_ENDPOINT="+fakeURL,
		"SNAPSWEEP_DELETE_RATE="+strconv.FormatFloat(rate, 'g', -1, 64),
		"SNAPSWEEP_TELEMETRY=none",
		"SNAPSWEEP_LOG_LEVEL=info",
	)
	return append(env, extra...)
}

// newPubSub creates the two topics, a pull subscription on the events topic
// and the cleanup topic's subscriptions as Terraform makes them (one per
// project, filtered on the project attribute, and the catch-all; see
// cleanupRoute), and returns the client, the events subscription and the
// cleanup routes. The driver plays push from them.
func newPubSub(ctx context.Context, project string, projects []string, ackDeadline time.Duration) (*pubsub.Client, string, []cleanupRoute, error) {
	ps, err := pubsub.NewClient(ctx, project)
	if err != nil {
		return nil, "", nil, fmt.Errorf("pubsub client: %w", err)
	}
	fail := func(err error) (*pubsub.Client, string, []cleanupRoute, error) {
		ps.Close()
		return nil, "", nil, err
	}
	topics := map[string]string{}
	for _, topic := range []string{"migration-events", "snapshot-cleanup"} {
		tname := "projects/" + project + "/topics/" + topic
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: tname}); err != nil {
			return fail(fmt.Errorf("create topic %s: %w", topic, err))
		}
		topics[topic] = tname
	}
	create := func(name, topic, filter string) (string, error) {
		sname := "projects/" + project + "/subscriptions/" + name
		if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name: sname, Topic: topics[topic], AckDeadlineSeconds: int32(ackDeadline / time.Second), Filter: filter,
		}); err != nil {
			return "", fmt.Errorf("create subscription %s: %w", sname, err)
		}
		return sname, nil
	}
	events, err := create("chaos-migration-events", "migration-events", "")
	if err != nil {
		return fail(err)
	}
	var routes []cleanupRoute
	for _, p := range append(slices.Clone(projects), "") {
		r := cleanupRoute{project: p}
		name := "chaos-snapshot-cleanup-" + r.String()
		if r.sub, err = create(name, "snapshot-cleanup", r.filter()); err != nil {
			return fail(err)
		}
		routes = append(routes, r)
	}
	return ps, events, routes, nil
}

// startFake starts `snapsweep fake-compute` with args on a free port and
// waits until it answers.
func startFake(ctx context.Context, bin, logDir string, args ...string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	fake, err := startProc("fake-compute", bin, append([]string{"fake-compute", "--addr", fmt.Sprintf("127.0.0.1:%d", port)}, args...),
		os.Environ(), filepath.Join(logDir, "fake-compute.log"))
	if err != nil {
		return nil, "", err
	}
	if err := waitHTTP(ctx, fake, url+"/fake/faults", 30*time.Second); err != nil {
		fake.stop(time.Second)
		return nil, "", err
	}
	return fake, url, nil
}

// startServe starts serve instance i with env (PORT added) and waits until
// it answers /health. A non-nil instance is returned even on error, for the
// caller to stop.
func startServe(ctx context.Context, i int, bin, logDir string, env []string) (*instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	in := &instance{idx: i, name: instanceName(i), port: port, bin: bin,
		log: filepath.Join(logDir, fmt.Sprintf("serve-%d.log", i)), env: append(env, "PORT="+strconv.Itoa(port))}
	return in, in.start(ctx)
}

// instanceName is serve instance i's name in logs, pushes and the Compute
// fake's counts.
func instanceName(i int) string { return fmt.Sprintf("serve-%d", i) }

func sleepUntil(ctx context.Context, t time.Time) bool {
	return wait.Sleep(ctx, time.Until(t)) == nil
}

func postJSON(ctx context.Context, url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// seedCompute creates the workload's snapshots in the fake (all but those
// the job deleted itself) and marks some in use.
func (r *runner) seedCompute(ctx context.Context, w *Workload) error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, sn := range w.Snaps {
		if sn.JobDeleted {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := postJSON(ctx, r.fakeURL+"/fake/snapshots", map[string]any{"project": w.Project, "name": sn.Name,
				"labels": sn.Labels(labelKey)}, nil)
			if err == nil && sn.InUse > 0 {
				err = postJSON(ctx, r.fakeURL+"/fake/inuse", map[string]any{"project": w.Project, "name": sn.Name, "n": sn.InUse}, nil)
			}
			if err == nil && sn.SlowOp {
				err = postJSON(ctx, r.fakeURL+"/fake/slowops", map[string]any{"project": w.Project, "name": sn.Name,
					"seconds": r.cfg.SlowOpFor.Seconds()}, nil)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// labelKey is the default SNAPSWEEP_SESSION_LABEL.
const labelKey = "migration-session"

// publish publishes every delivery to migration-events, in waves.
func (r *runner) publish(ctx context.Context, w *Workload) error {
	pub := r.ps.Publisher("migration-events")
	defer pub.Stop()
	waves := max(r.cfg.Waves, 1)
	per := (len(w.Deliveries) + waves - 1) / waves
	for i := 0; i < len(w.Deliveries); i += per {
		chunk := w.Deliveries[i:min(i+per, len(w.Deliveries))]
		results := make([]*pubsub.PublishResult, 0, len(chunk))
		for _, ev := range chunk {
			results = append(results, pub.Publish(ctx, &pubsub.Message{Data: w.Events[ev].Data,
				Attributes: map[string]string{"eventType": string(w.Events[ev].Type)}}))
		}
		for _, res := range results {
			if _, err := res.Get(ctx); err != nil {
				return fmt.Errorf("publish: %w", err)
			}
		}
		r.logf("published %d/%d event messages", i+len(chunk), len(w.Deliveries))
		if i+per < len(w.Deliveries) && !sleepUntil(ctx, time.Now().Add(r.cfg.WaveEvery)) {
			return ctx.Err()
		}
	}
	return nil
}

// killLoop SIGKILLs the victim at each KillAt, once it has cleanup pushes
// in flight (mid-cleanup), and restarts it.
func (r *runner) killLoop(ctx context.Context, t0 time.Time) {
	victim := r.instances[r.cfg.Victim%len(r.instances)]
	for i, at := range r.cfg.KillAt {
		// Not before the previous incarnation has had some time to work.
		at = max(at, time.Since(t0)+10*time.Second)
		r.await(ctx, t0.Add(at), time.Minute, "cleanup pushes in flight to "+victim.name, func() bool {
			return r.cleanups.inflightTo(victim.name) > 0
		})
		if ctx.Err() != nil {
			return
		}
		ev, cl := r.events.inflightTo(victim.name), r.cleanups.inflightTo(victim.name)
		pid := victim.kill()
		r.cov.KillCleanups = append(r.cov.KillCleanups, cl)
		r.mark("SIGKILL %d/%d: %s (pid %d) with %d cleanup and %d event pushes in flight to it",
			i+1, len(r.cfg.KillAt), victim.name, pid, cl, ev)
		if !sleepUntil(ctx, time.Now().Add(r.cfg.RestartAfter)) {
			return
		}
		if err := victim.start(ctx); err != nil {
			r.fail(fmt.Errorf("restart %s: %w", victim.name, err))
			return
		}
		r.mark("%s restarted (pid %d)", victim.name, victim.cur.pid())
	}
}

// await waits until at, then until cond holds, at most extra longer. It
// reports whether cond held, and logs when it gave up waiting.
func (r *runner) await(ctx context.Context, at time.Time, extra time.Duration, what string, cond func() bool) bool {
	if !sleepUntil(ctx, at) {
		return false
	}
	deadline := time.Now().Add(extra)
	for !cond() {
		if time.Now().After(deadline) {
			r.mark("gave up waiting %s for %s", extra, what)
			return false
		}
		if !sleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return false
		}
	}
	return true
}

func (r *runner) sampleMemory(ctx context.Context) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		for _, in := range r.instances {
			in.sample()
			if err := in.crashed(); err != nil {
				r.fail(err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// progress logs the state of things every 10 s.
func (r *runner) progress(ctx context.Context) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		counts, err := r.reg.CountByState(qctx)
		cancel()
		reg := "unreadable"
		if err == nil {
			var parts []string
			for _, st := range store.States() {
				if counts[st] > 0 {
					parts = append(parts, fmt.Sprintf("%s=%d", st, counts[st]))
				}
			}
			reg = strings.Join(parts, " ")
		}
		ev, cl := r.events.stats(), r.cleanups.stats()
		r.logf("progress: events %d msgs/%d deliveries (%d pending), cleanups %d msgs/%d deliveries (%d pending); registry %s",
			ev.Messages, ev.Deliveries, r.events.pending(), cl.Messages, cl.Deliveries, r.cleanups.pending(), reg)
	}
}

// sweepReport is the part of the sweep's JSON report the driver reads.
type sweepReport struct {
	RunID   string   `json:"runId"`
	Skipped string   `json:"skipped"`
	Status  string   `json:"status"`
	Errors  []string `json:"errors"`
	Used    int      `json:"used"`
	Expired struct {
		Found int `json:"found"`
	} `json:"expired"`
	Threshold struct {
		Scheduled int `json:"scheduled"`
	} `json:"threshold"`
	Stuck struct {
		Pending          int `json:"pending"`
		Deleting         int `json:"deleting"`
		Redriven         int `json:"redriven"`
		ConfirmedDeleted int `json:"confirmedDeleted"`
	} `json:"stuck"`
	Orphans struct {
		Found   int `json:"found"`
		Adopted int `json:"adopted"`
	} `json:"orphans"`
}

func (s *sweepReport) work() int {
	return s.Used + s.Expired.Found + s.Threshold.Scheduled + s.Stuck.Pending + s.Stuck.Deleting +
		s.Stuck.ConfirmedDeleted + s.Orphans.Found + s.Orphans.Adopted
}

func (r *runner) sweep(ctx context.Context, n int) (*sweepReport, error) {
	in := r.instances[n%len(r.instances)]
	if !in.isUp() {
		in = r.instances[(n+1)%len(r.instances)]
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.url()+"/scheduler/sweep", strings.NewReader("{}"))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CloudScheduler-JobName", "snapsweep-chaos")
	req.Header.Set("X-CloudScheduler-ScheduleTime", time.Now().UTC().Format(time.RFC3339Nano))
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sweep on %s: %s: %s", in.name, resp.Status, bytes.TrimSpace(body))
	}
	var rep sweepReport
	if err := json.Unmarshal(body, &rep); err != nil {
		return nil, fmt.Errorf("sweep report: %w", err)
	}
	return &rep, nil
}

// settle lets the pushes drain and sweeps until two sweeps in a row find
// no work, nothing is cleanup_pending or deleting, and no message waits.
func (r *runner) settle(ctx context.Context, w *Workload) {
	// First every event message is delivered and acked: at fleet scale on
	// the emulator that takes minutes, and the sweeps only count once the
	// stream is in.
	idle := func() bool {
		return r.events.ackedCount() >= len(w.Deliveries) && r.events.idleFor(3*time.Second) && r.cleanups.idleFor(3*time.Second)
	}
	if !r.await(ctx, time.Now(), r.cfg.DrainTimeout, "every event message acked and both subscriptions idle", idle) {
		r.mark("not drained after %s: %d of %d event messages acked; checking the invariants anyway", r.cfg.DrainTimeout, r.events.ackedCount(), len(w.Deliveries))
		r.dump()
		return
	}
	r.mark("drained: every event message acked, both subscriptions idle")
	deadline := time.Now().Add(r.cfg.SettleTimeout)
	quiet := 0
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !idle() {
			time.Sleep(time.Second)
			continue
		}
		rep, err := r.sweep(ctx, r.res.Sweeps)
		r.res.Sweeps++
		if err != nil {
			r.logf("sweep %d: %v", r.res.Sweeps, err)
			quiet = 0
			time.Sleep(2 * time.Second)
			continue
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		counts, cerr := r.reg.CountByState(qctx)
		cancel()
		open := counts[store.CleanupPending] + counts[store.Deleting]
		if r.res.SweepWork == nil {
			r.res.SweepWork = map[string]int{}
		}
		for k, v := range map[string]int{"used": rep.Used, "stuckPending": rep.Stuck.Pending, "stuckDeleting": rep.Stuck.Deleting,
			"redriven": rep.Stuck.Redriven, "confirmedDeleted": rep.Stuck.ConfirmedDeleted, "expired": rep.Expired.Found,
			"orphans": rep.Orphans.Found, "adopted": rep.Orphans.Adopted} {
			r.res.SweepWork[k] += v
		}
		r.logf("sweep %d: status %s, used %d, expired %d, stuck pending %d deleting %d (redriven %d, confirmed deleted %d), orphans %d (adopted %d)%s; registry cleanup_pending=%d deleting=%d",
			r.res.Sweeps, rep.Status, rep.Used, rep.Expired.Found, rep.Stuck.Pending, rep.Stuck.Deleting, rep.Stuck.Redriven,
			rep.Stuck.ConfirmedDeleted, rep.Orphans.Found, rep.Orphans.Adopted, skipped(rep), counts[store.CleanupPending], counts[store.Deleting])
		if cerr == nil && rep.Skipped == "" && len(rep.Errors) == 0 && rep.work() == 0 && open == 0 {
			quiet++
			if quiet >= 2 {
				r.res.Quiet = true
				r.mark("quiet: %d sweeps, the last two found no work; nothing cleanup_pending or deleting", r.res.Sweeps)
				return
			}
		} else {
			quiet = 0
		}
		time.Sleep(2 * time.Second)
	}
	r.mark("not quiet after %s of sweeps (%d sweeps): checking the invariants anyway", r.cfg.SettleTimeout, r.res.Sweeps)
	r.dump()
}

// dump asks every serve process for a goroutine dump (SIGQUIT), for the
// post-mortem.
func (r *runner) dump() {
	for _, in := range r.instances {
		if pid := in.quit(); pid > 0 {
			r.logf("%s (pid %d): goroutine dump (SIGQUIT) in %s", in.name, pid, in.log)
		}
	}
}

func skipped(rep *sweepReport) string {
	s := ""
	if rep.Skipped != "" {
		s += ", skipped: " + rep.Skipped
	}
	if len(rep.Errors) > 0 {
		s += ", errors: " + strings.Join(rep.Errors, "; ")
	}
	return s
}

func (r *runner) writeSummary() error {
	b, err := json.MarshalIndent(r.res, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(r.cfg.LogDir, "summary.json"), b, 0o644)
}
