// Package demo runs the real service in one process with nothing outside it:
// the registry in memory (or the Firestore emulator when
// FIRESTORE_EMULATOR_HOST is set), Pub/Sub on pstest with a push bridge,
// and the Compute fake behind a local HTTP server with latency and faults.
// Simulated migration jobs report through the job-side reporter; the demo
// shows progress, waits until everything settled, runs a sweep and prints
// what happened, checked against what the Compute fake saw.
//
// It builds the service with service.NewComponents and drives it through its
// public inputs only (push requests, the reporter, the sweep endpoint); it
// must not reach into the service's parts to change state.
package demo

import (
	"context"
	"fmt"
	"github.com/snapsweep/snapsweep/internal/wait"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/service"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/sethvargo/go-envconfig"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/telemetry"
)

// Options configures a demo run.
type Options struct {
	Sessions int
	Tasks    int // per session
	Seed     uint64
	// Serve keeps the service running on Addr after the report.
	Serve bool
	Addr  string
	JSON  bool
	// Out gets the report; Progress gets the progress display (on a
	// terminal when TTY is set); LogOut gets the service's JSON logs.
	Out, Progress, LogOut io.Writer
	TTY                   bool
	// Width is the terminal's width (0: unknown); the progress line fits in it.
	Width int
	// LogPath names the log file in the report ("" when not a file).
	LogPath string
	// Lookup reads the environment (FIRESTORE_EMULATOR_HOST).
	Lookup func(string) (string, bool)
	// Faults of the Compute fake.
	Faults Faults
}

// Faults are the Compute fake's latency and faults.
type Faults struct {
	OpLatency         time.Duration // how long a delete operation runs
	CallMin, CallMax  time.Duration // latency added to every call
	FailureRate       float64       // share of calls answered 503
	QuotaPerMinute    int           // delete calls per project and wall-clock minute, as Compute counts
	DeleteRate        int           // the service's SNAPSWEEP_DELETE_RATE
	DeleteConcurrency int
	// ProgressEvery is the interval of progress lines off a terminal.
	ProgressEvery time.Duration
}

func DefaultFaults() Faults {
	return Faults{
		OpLatency: 350 * time.Millisecond, CallMin: 20 * time.Millisecond, CallMax: 50 * time.Millisecond,
		FailureRate: 0.10, QuotaPerMinute: 1200, DeleteRate: 25, DeleteConcurrency: 16,
		ProgressEvery: time.Second,
	}
}

const demoProject = "demo-project"

// Result is what a run produced, for the caller to inspect.
type Result struct {
	Report *Report
	Plan   *demoPlan
	Fake   *gcefake.Fake
	Store  store.Registry
}

// demoRun holds a running demo's parts.
type demoRun struct {
	opts   Options
	plan   *demoPlan
	fake   *gcefake.Fake
	reg    store.Registry
	svc    *service.Service
	bridge *pushBridge
	pstest *pstest.Server
	stats  simStats
	start  time.Time
}

// Run runs the demo and prints its report.
func Run(ctx context.Context, opts Options) (_ *Result, err error) {
	if opts.Faults == (Faults{}) {
		opts.Faults = DefaultFaults()
	}
	if opts.Lookup == nil {
		opts.Lookup = func(string) (string, bool) { return "", false }
	}
	for _, w := range []*io.Writer{&opts.Out, &opts.Progress, &opts.LogOut} {
		if *w == nil {
			*w = io.Discard
		}
	}
	d := &demoRun{opts: opts, start: time.Now()}
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	f := opts.Faults

	// The Compute fake, with latency on every call and random 503s.
	// Sizes are final at once (no UPDATING period): the demo deletes within
	// seconds, and its savings line is checked against the fake's sizes.
	// The fake counts quota per wall-clock minute, as Compute does.
	d.fake = gcefake.New(gcefake.Options{Latency: f.OpLatency, Quota: map[string]int{gcefake.GroupWrites: f.QuotaPerMinute}, Seed: opts.Seed, SizingTime: -1})
	d.fake.SetFailureRate(http.StatusServiceUnavailable, "backendError", f.FailureRate)
	computeSrv := httptest.NewServer(withCallLatency(d.fake.AdminHandler(), f.CallMin, f.CallMax, opts.Seed))
	cleanups = append(cleanups, computeSrv.Close)

	// Pub/Sub: pstest in this process.
	d.pstest = pstest.NewServer()
	cleanups = append(cleanups, func() { d.pstest.Close() })
	conn, err := grpc.NewClient(d.pstest.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("pstest connection: %w", err)
	}
	cleanups = append(cleanups, func() { conn.Close() })
	ps, err := pubsub.NewClient(ctx, demoProject, option.WithGRPCConn(conn))
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	cleanups = append(cleanups, func() { ps.Close() })

	// The registry: memory, or the Firestore emulator. On a shared
	// emulator every run gets its own session ids.
	suffix := ""
	registry := "memory"
	if host, ok := opts.Lookup("FIRESTORE_EMULATOR_HOST"); ok && host != "" {
		fs, err := firestore.NewClient(ctx, demoProject)
		if err != nil {
			return nil, fmt.Errorf("firestore client: %w", err)
		}
		cleanups = append(cleanups, func() { fs.Close() })
		d.reg = store.NewFirestore(fs)
		suffix = fmt.Sprintf("-%04x", rand.Uint32()&0xffff)
		registry = "Firestore emulator at " + host
	} else {
		d.reg = store.NewMemory()
	}

	cfg, err := config.Load(ctx, envconfig.MapLookuper(map[string]string{
		"PORT":                         "0",
		"GOOGLE_CLOUD_PROJECT":         demoProject,
		"SNAPSWEEP_COMPUTE_ENDPOINT":   computeSrv.URL,
		"SNAPSWEEP_DELETE_RATE":        fmt.Sprint(f.DeleteRate),
		"SNAPSWEEP_DELETE_CONCURRENCY": fmt.Sprint(f.DeleteConcurrency),
		"SNAPSWEEP_TELEMETRY":          "none",
		// The demo lasts seconds: its orphan is adopted after a grace of
		// one second instead of the default hour (in production the grace
		// gives a late snapshot.created time to arrive first).
		"SNAPSWEEP_ORPHAN_GRACE": "1s",
	}))
	if err != nil {
		return nil, err
	}
	for _, name := range []string{cfg.EventsTopic, cfg.CleanupTopic} {
		topic := "projects/" + demoProject + "/topics/" + name
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: topic}); err != nil {
			return nil, fmt.Errorf("create topic %s: %w", name, err)
		}
		if _, err := ps.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{
			Name: "projects/" + demoProject + "/subscriptions/" + name + "-push", Topic: topic, AckDeadlineSeconds: 60,
		}); err != nil {
			return nil, fmt.Errorf("create subscription %s: %w", name, err)
		}
	}

	addr := "127.0.0.1:0"
	if opts.Serve {
		addr = opts.Addr
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	log := service.NewLogger(opts.LogOut, cfg)
	d.svc, err = service.New(ctx, cfg, service.Options{Registry: d.reg, PubSub: ps, Logger: log, Listener: lis,
		Tracer: tracenoop.NewTracerProvider(), Meter: metricnoop.NewMeterProvider()})
	if err != nil {
		lis.Close()
		return nil, err
	}
	cleanups = append(cleanups, d.svc.Close)
	runCtx, stopRun := context.WithCancel(ctx)
	var bg sync.WaitGroup
	cleanups = append(cleanups, func() { stopRun(); bg.Wait() })
	if opts.Serve {
		bg.Go(func() {
			if err := d.svc.Run(runCtx); err != nil {
				log.Error("demo service stopped", "error", err)
			}
		})
	} else {
		lis.Close()
	}

	// The push bridge: several requests in flight per subscription.
	subName := func(topic string) string { return "projects/" + demoProject + "/subscriptions/" + topic + "-push" }
	d.bridge = newPushBridge(d.svc.Handler, ps, subName(cfg.EventsTopic), subName(cfg.CleanupTopic))
	bg.Go(func() { d.bridge.run(runCtx) })

	d.plan = makeDemoPlan(demoProject, opts.Sessions, opts.Tasks, opts.Seed, suffix)
	if !opts.JSON {
		d.printHeader(registry)
	}

	// Play the sessions while showing progress.
	prog := d.startProgress(ctx)
	sim := &simulation{plan: d.plan, ps: ps, topic: cfg.EventsTopic, label: cfg.SessionLabel, fake: d.fake, stats: &d.stats}
	if err := sim.run(ctx); err != nil {
		prog.stop()
		return nil, fmt.Errorf("simulated jobs: %w", err)
	}
	prog.phase(fmt.Sprintf("all jobs reported (%d events, %d sent twice, %d tasks out of order); waiting until every message is handled",
		d.stats.Events.Load(), d.stats.Duplicates.Load(), d.stats.Reordered.Load()))
	if err := d.waitQuiet(ctx, 3*time.Minute); err != nil {
		prog.stop()
		return nil, err
	}
	settled := time.Now()

	// The scheduled sweep, once the incident is over: no more faults.
	d.fake.SetFailureRate(0, "", 0)
	prog.phase("running a sweep (faults off): health checks, expired, stuck, orphans")
	sweepCtx := telemetry.WithLogger(ctx, log)
	swept, err := d.svc.Sweeper.Run(sweepCtx, false, "")
	if err != nil {
		prog.stop()
		return nil, fmt.Errorf("sweep: %w", err)
	}
	if err := d.waitQuiet(ctx, time.Minute); err != nil {
		prog.stop()
		return nil, err
	}
	prog.stop()

	rep, err := d.report(ctx, swept, settled)
	if err != nil {
		return nil, err
	}
	if opts.JSON {
		err = ops.WriteJSON(opts.Out, rep)
	} else {
		err = d.printReport(rep)
	}
	if err != nil {
		return nil, err
	}
	res := &Result{Report: rep, Plan: d.plan, Fake: d.fake, Store: d.reg}
	if !rep.Verified {
		return res, fmt.Errorf("the report does not match the Compute fake: %s", strings.Join(rep.Problems, "; "))
	}
	if opts.Serve {
		d.printServing(lis.Addr().String(), computeSrv.URL, registry)
		<-ctx.Done()
	}
	return res, nil
}

// withCallLatency adds a random latency between lo and hi to every call.
func withCallLatency(h http.Handler, lo, hi time.Duration, seed uint64) http.Handler {
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 0xca11))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := lo
		if hi > lo {
			mu.Lock()
			d += time.Duration(rng.Int64N(int64(hi - lo)))
			mu.Unlock()
		}
		if wait.Sleep(r.Context(), d) != nil {
			return
		}
		h.ServeHTTP(w, r)
	})
}

// counts sums the run's snapshots by state (its sessions only, so that a
// shared Firestore emulator's older runs do not count).
func (d *demoRun) counts(ctx context.Context) (map[store.State]int64, error) {
	out := map[store.State]int64{}
	if m, ok := d.reg.(*store.Memory); ok {
		return m.CountByState(ctx)
	}
	for _, s := range d.plan.Sessions {
		for _, st := range store.States() {
			n, err := d.reg.CountSnapshots(ctx, store.Query{SessionID: s.ID, States: []store.State{st}})
			if err != nil {
				return nil, err
			}
			out[st] += n
		}
	}
	return out, nil
}

// waitQuiet waits until every published message was acknowledged, no push
// is in flight and no snapshot is pending or being deleted, twice in a row.
func (d *demoRun) waitQuiet(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	calm := 0
	for calm < 3 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the demo did not settle within %s (see the service log)", limit)
		}
		if err := wait.Sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
		quiet, err := d.quiet(ctx)
		if err != nil {
			return err
		}
		if quiet {
			calm++
		} else {
			calm = 0
		}
	}
	return nil
}

func (d *demoRun) quiet(ctx context.Context) (bool, error) {
	if d.bridge.pending() > 0 {
		return false, nil
	}
	for _, m := range d.pstest.Messages() {
		if m.Acks == 0 {
			return false, nil
		}
	}
	c, err := d.counts(ctx)
	if err != nil {
		return false, err
	}
	return c[store.CleanupPending]+c[store.Deleting] == 0, nil
}

// demoProgress redraws the progress line.
type demoProgress struct {
	d     *demoRun
	stopc chan struct{}
	done  chan struct{}
	mu    sync.Mutex
}

func (d *demoRun) startProgress(ctx context.Context) *demoProgress {
	p := &demoProgress{d: d, stopc: make(chan struct{}), done: make(chan struct{})}
	every := d.opts.Faults.ProgressEvery
	if every <= 0 {
		every = time.Second
	}
	if d.opts.TTY {
		every = 200 * time.Millisecond
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-p.stopc:
				p.draw(ctx, true)
				return
			case <-ctx.Done():
				return
			case <-t.C:
				p.draw(ctx, false)
			}
		}
	}()
	return p
}

// expectedDeletes is how many snapshots the plan lets snapsweep delete.
func (p *demoPlan) expectedDeletes() int {
	n := 0
	for _, t := range p.tasks() {
		if t.Outcome != outcomeSucceeded {
			continue
		}
		for _, s := range t.Snapshots {
			if !s.WrongLabel {
				n++
			}
		}
	}
	return n
}

func (p *demoProgress) draw(ctx context.Context, final bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c, err := p.d.counts(ctx)
	if err != nil {
		return
	}
	var registered int64
	for _, n := range c {
		registered += n
	}
	line := fmt.Sprintf("registered %4d  deleted %4d  retained %3d  running %3d  pending %3d  refused %d",
		registered, c[store.Deleted], c[store.Retained], c[store.Active], c[store.CleanupPending]+c[store.Deleting], c[store.Refused])
	el := time.Since(p.d.start).Seconds()
	w := p.d.opts.Progress
	if !p.d.opts.TTY {
		if !final {
			fmt.Fprintf(w, "%5.1fs  %s\n", el, line)
		}
		return
	}
	want := max(p.d.plan.expectedDeletes(), 1)
	const width = 20
	filled := min(width, int(c[store.Deleted])*width/want)
	short := fmt.Sprintf("%5.1fs %s%s %d/%d deleted · registered %d · retained %d · running %d · pending %d",
		el, strings.Repeat("█", filled), strings.Repeat("░", width-filled), c[store.Deleted], want,
		registered, c[store.Retained], c[store.Active], c[store.CleanupPending]+c[store.Deleting])
	if r := []rune(short); p.d.opts.Width > 10 && len(r) >= p.d.opts.Width {
		short = string(r[:p.d.opts.Width-1])
	}
	fmt.Fprintf(w, "\r\033[K%s", short)
	if final {
		fmt.Fprintln(w)
	}
}

// phase prints a line between progress updates.
func (p *demoProgress) phase(msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.d.opts.TTY {
		fmt.Fprint(p.d.opts.Progress, "\r\033[K")
	}
	fmt.Fprintf(p.d.opts.Progress, "%5.1fs  %s\n", time.Since(p.d.start).Seconds(), msg)
}

func (p *demoProgress) stop() {
	select {
	case <-p.done:
	default:
		close(p.stopc)
		<-p.done
	}
}
