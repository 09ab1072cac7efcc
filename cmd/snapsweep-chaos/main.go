// Command snapsweep-chaos is the chaos run's driver (`make chaos`, through
// scripts/chaos.sh, which starts the emulators and builds the binaries). It
// starts the Compute fake and several `snapsweep serve` processes, plays
// Pub/Sub push for them, injects the faults, sweeps until quiet and checks
// the invariants. It exits 1 if any invariant fails, 2 if the run could not
// be carried out.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/snapsweep/snapsweep/internal/chaos"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bench" {
		os.Exit(bench(os.Args[2:]))
	}
	os.Exit(run())
}

type durations []time.Duration

func (d *durations) String() string {
	var parts []string
	for _, x := range *d {
		parts = append(parts, x.String())
	}
	return strings.Join(parts, ",")
}

func (d *durations) Set(s string) error {
	*d = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		x, err := time.ParseDuration(p)
		if err != nil {
			return err
		}
		*d = append(*d, x)
	}
	return nil
}

type floats []float64

func (f *floats) String() string {
	var parts []string
	for _, x := range *f {
		parts = append(parts, strconv.FormatFloat(x, 'g', -1, 64))
	}
	return strings.Join(parts, ",")
}

func (f *floats) Set(s string) error {
	*f = nil
	for _, p := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || x <= 0 {
			return fmt.Errorf("bad rate %q", p)
		}
		*f = append(*f, x)
	}
	return nil
}

func run() int {
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	cfg := chaos.Config{
		DeleteRates: []float64{4, 4, 4},
		KillAt:      []time.Duration{25 * time.Second, 45 * time.Second},
		Out:         os.Stdout,
	}
	seed := uint64(time.Now().UnixNano() % 1_000_000)
	fs := flag.NewFlagSet("snapsweep-chaos", flag.ContinueOnError)
	fs.StringVar(&cfg.Bin, "bin", "bin/snapsweep", "the snapsweep binary")
	fs.StringVar(&cfg.LogDir, "logdir", "", "directory for the processes' logs and summary.json (default: a new one under $TMPDIR)")
	fs.StringVar(&cfg.Project, "project", "snapsweep-chaos-"+hex.EncodeToString(suffix), "project id of the run")
	fs.IntVar(&cfg.FirestorePGID, "firestore-pgid", 0, "process group of the Firestore emulator, to freeze it (0: no freeze)")
	fs.Var((*floats)(&cfg.DeleteRates), "delete-rates", "SNAPSWEEP_DELETE_RATE of each serve instance (comma list; one instance each)")
	// Per minute, as Compute counts: a run makes about 100 delete calls in
	// all, so a quota must be well below that to refuse calls in a minute
	// (6/s converted to 360/min would never bite).
	fs.IntVar(&cfg.Quota, "quota", 30, "the fake's delete quota per wall-clock minute and project")
	fs.Float64Var(&cfg.FailRate, "fail-rate", 0.3, "share of Compute calls that fail during the chaos phase")
	fs.IntVar(&cfg.FailCode, "fail-code", 503, "HTTP status of those failures")
	fs.DurationVar(&cfg.OpLatency, "op-latency", 300*time.Millisecond, "how long a Compute delete operation runs")
	fs.IntVar(&cfg.Workload.SlowOps, "slow-ops", 4, "eligible snapshots whose delete operations report RUNNING for --slow-op-for")
	fs.DurationVar(&cfg.SlowOpFor, "slow-op-for", 40*time.Second, "longer than the engine's 15 s wait, so those deletes are left pending")
	fs.IntVar(&cfg.Inflight, "inflight", 32, "largest push window: push requests in flight per subscription")
	fs.BoolVar(&cfg.FixedWindow, "fixed-window", false, "keep --inflight pushes in flight whatever the failures (Pub/Sub shrinks its push window on failures)")
	fs.DurationVar(&cfg.AckDeadline, "ack-deadline", 120*time.Second, "ack deadline of the subscriptions = HTTP timeout of one push")
	fs.DurationVar(&cfg.BackoffMin, "backoff-min", time.Second, "redelivery delay after the first nack")
	fs.DurationVar(&cfg.BackoffMax, "backoff-max", 10*time.Second, "longest redelivery delay")
	fs.IntVar(&cfg.Workload.Sessions, "sessions", 7, "migration sessions")
	fs.IntVar(&cfg.Workload.TasksMin, "tasks-min", 9, "fewest tasks per session")
	fs.IntVar(&cfg.Workload.TasksMax, "tasks-max", 15, "most tasks per session")
	fs.IntVar(&cfg.Workload.SnapsMax, "snaps-max", 4, "most snapshots per task")
	fs.IntVar(&cfg.Workload.WrongLabels, "wrong-labels", 8, "snapshots with a wrong or missing ownership label")
	fs.IntVar(&cfg.Workload.InUse, "in-use", 12, "eligible snapshots that are in use for their first 2-4 delete calls")
	fs.Uint64Var(&seed, "seed", seed, "seed of the workload and the fault injection")
	fs.IntVar(&cfg.Waves, "waves", 8, "publish the deliveries in this many waves")
	fs.DurationVar(&cfg.WaveEvery, "wave-every", 2*time.Second, "pause between waves")
	fs.DurationVar(&cfg.FreezeAt, "freeze-at", 10*time.Second, "when to freeze the Firestore emulator (after the first publish)")
	fs.DurationVar(&cfg.FreezeFor, "freeze-for", 10*time.Second, "how long it stays frozen (0: no freeze)")
	fs.Var((*durations)(&cfg.KillAt), "kill-at", "when to SIGKILL the victim instance (comma list, after the first publish)")
	fs.IntVar(&cfg.Victim, "victim", 1, "index of the serve instance that is killed")
	fs.DurationVar(&cfg.RestartAfter, "restart-after", 2*time.Second, "how long the victim stays down")
	fs.DurationVar(&cfg.FaultsFor, "faults-for", 60*time.Second, "earliest time the Compute faults are cleared (after the first publish; then once half the eligible snapshots are deleted, at most --faults-max later)")
	fs.DurationVar(&cfg.FaultsMax, "faults-max", 5*time.Minute, "how much longer than --faults-for the faults may stay on waiting for the quota and in-use paths and half the eligible deletions")
	fs.Float64Var(&cfg.MinFaultThroughput, "min-fault-throughput", 0.5, "share of the granted delete quota the service must use while the Compute faults are on (0: only report it)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 10*time.Minute, "how long to wait, after the faults, for every event message to be acked")
	fs.DurationVar(&cfg.SettleTimeout, "settle-timeout", 4*time.Minute, "how long to sweep for quiet once the events are in")
	fs.DurationVar(&cfg.Lease, "lease", time.Minute, "SNAPSWEEP_DELETE_LEASE given to serve (keep it above the engine's 45 s budget per message)")
	fs.DurationVar(&cfg.StuckAfter, "stuck-after", time.Minute, "SNAPSWEEP_SWEEP_STUCK_AFTER given to serve (at least the lease)")
	fs.IntVar(&cfg.RSSLimitMB, "rss-limit-mb", 300, "peak RSS each serve process must stay under")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var bad []string
	w := cfg.Workload
	if w.Sessions < 1 || w.TasksMin < 1 || w.TasksMax < w.TasksMin || w.SnapsMax < 1 {
		bad = append(bad, "want --sessions, --tasks-min, --snaps-max >= 1 and --tasks-max >= --tasks-min")
	}
	if len(cfg.DeleteRates) < 2 {
		bad = append(bad, "--delete-rates must name at least two instances")
	}
	if cfg.Inflight < 1 {
		bad = append(bad, "--inflight must be at least 1")
	}
	if cfg.Quota < 0 || cfg.FaultsMax < 0 || cfg.MinFaultThroughput < 0 || cfg.MinFaultThroughput > 1 {
		bad = append(bad, "want --quota, --faults-max >= 0 and --min-fault-throughput within [0, 1]")
	}
	if cfg.FailRate < 0 || cfg.FailRate > 1 {
		bad = append(bad, "--fail-rate must be within [0, 1]")
	}
	if cfg.Lease < 10*time.Second || cfg.StuckAfter < cfg.Lease {
		bad = append(bad, "want --lease >= 10s and --stuck-after >= --lease (serve refuses anything else)")
	}
	if cfg.AckDeadline < 10*time.Second || cfg.AckDeadline > 600*time.Second {
		bad = append(bad, "--ack-deadline must be within [10s, 600s]")
	}
	if len(bad) > 0 {
		fmt.Fprintln(os.Stderr, "snapsweep-chaos: "+strings.Join(bad, "; "))
		return 2
	}
	cfg.Workload.Seed = seed
	cfg.Workload.Project = cfg.Project
	if cfg.LogDir == "" {
		dir, err := os.MkdirTemp("", "snapsweep-chaos-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		cfg.LogDir = dir
	}
	if abs, err := filepath.Abs(cfg.LogDir); err == nil {
		cfg.LogDir = abs
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, err := chaos.Run(ctx, cfg)
	fmt.Println()
	fmt.Println("== invariants")
	for _, iv := range res.Invariants {
		fmt.Println(iv)
	}
	for _, e := range res.Errors {
		fmt.Println("ERROR", e)
	}
	verdict := "PASS"
	code := 0
	switch {
	case err != nil:
		fmt.Println("ERROR", err)
		verdict, code = "ERROR (run not completed)", 2
	case !res.OK():
		verdict, code = "FAIL", 1
	}
	passed := 0
	for _, iv := range res.Invariants {
		if iv.OK {
			passed++
		}
	}
	fmt.Printf("RESULT %s: %d/%d invariants hold; seed %d, project %s, %s, logs in %s\n",
		verdict, passed, len(res.Invariants), seed, cfg.Project, time.Duration(res.DurationS*float64(time.Second)).Round(time.Second), cfg.LogDir)
	return code
}
