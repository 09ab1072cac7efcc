package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/snapsweep/snapsweep/internal/chaos"
)

// scenarios are the pacing benchmarks of BENCHMARKS.md (issue 14): one
// project at 300 deletes/minute; three projects at 60, 300 and 1,200; the
// 1,200 project alone (its top speed without the others); and 1,000 tasks
// completing within a minute (latency from completion to deletion). The
// three pacing scenarios run on a backlog (chaos.BenchConfig.Backlog);
// latency runs end to end.
var scenarios = map[string]func(c *chaos.BenchConfig){
	"one-project": func(c *chaos.BenchConfig) {
		c.Projects = []chaos.BenchProject{{ID: "bench-a", QuotaPerMinute: 300, Snapshots: 900}}
		c.Backlog = true
	},
	"three-projects": threeProjects,
	// three-projects with each project's delete rate set to its quota
	// shared by the instances (SNAPSWEEP_DELETE_RATE_BY_PROJECT = quota ÷
	// 60 ÷ instances), as docs/cleanup.md advises: the quota is reached
	// without spending it early, so no call is refused.
	"three-projects-paced": func(c *chaos.BenchConfig) {
		threeProjects(c)
		var rates []string
		for _, p := range c.Projects {
			rates = append(rates, fmt.Sprintf("%s=%g", p.ID, float64(p.QuotaPerMinute)/60/float64(c.Instances)))
		}
		c.RateByProject = strings.Join(rates, ",")
	},
	"fast-alone": func(c *chaos.BenchConfig) {
		c.Projects = []chaos.BenchProject{{ID: "bench-fast", QuotaPerMinute: 1200, Snapshots: 2400}}
		c.Backlog = true
	},
	"latency": func(c *chaos.BenchConfig) {
		c.Projects = []chaos.BenchProject{{ID: "bench-lat", QuotaPerMinute: 1200, Snapshots: 1000}}
		c.SnapsPerTask = 1
		c.CompleteOver = time.Minute
	},
}

// threeProjects is three projects at 60, 300 and 1,200 deletes a minute
// at once, each against its own quota.
func threeProjects(c *chaos.BenchConfig) {
	c.Projects = []chaos.BenchProject{
		{ID: "bench-slow", QuotaPerMinute: 60, Snapshots: 180},
		{ID: "bench-mid", QuotaPerMinute: 300, Snapshots: 900},
		{ID: "bench-fast", QuotaPerMinute: 1200, Snapshots: 2400},
	}
	c.Backlog = true
}

// bench runs the named pacing benchmarks and prints their figures as a
// Markdown table (scripts/bench.sh puts it into BENCHMARKS.md).
func bench(args []string) int {
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	cfg := chaos.BenchConfig{Out: os.Stderr, SnapsPerTask: 3}
	fs := flag.NewFlagSet("snapsweep-chaos bench", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: snapsweep-chaos bench [flags] SCENARIO...\nscenarios: %s\n", strings.Join(slices.Sorted(maps.Keys(scenarios)), ", ")+", "+peerScenario)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Bin, "bin", "bin/snapsweep", "the snapsweep binary")
	logRoot := fs.String("logdir", "", "directory for the processes' logs (default: a new one under $TMPDIR)")
	fs.IntVar(&cfg.Instances, "instances", 2, "serve instances")
	fs.Float64Var(&cfg.Rate, "delete-rate", 10, "SNAPSWEEP_DELETE_RATE of each instance (per project)")
	fs.StringVar(&cfg.RateByProject, "delete-rate-by-project", "", "SNAPSWEEP_DELETE_RATE_BY_PROJECT of each instance")
	fs.IntVar(&cfg.Inflight, "inflight", 64, "push requests in flight per subscription")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Minute, "how long to wait for every deletion")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var bad []string
	for _, name := range fs.Args() {
		if scenarios[name] == nil && name != peerScenario {
			bad = append(bad, fmt.Sprintf("unknown scenario %q", name))
		}
	}
	if fs.NArg() == 0 {
		bad = append(bad, "name at least one scenario")
	}
	if cfg.Instances < 1 || cfg.Rate <= 0 || cfg.Inflight < 1 {
		bad = append(bad, "want --instances >= 1, --delete-rate > 0, --inflight >= 1")
	}
	if len(bad) > 0 {
		fmt.Fprintln(os.Stderr, "snapsweep-chaos bench: "+strings.Join(bad, "; "))
		fs.Usage()
		return 2
	}
	if *logRoot == "" {
		dir, err := os.MkdirTemp("", "snapsweep-bench-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		*logRoot = dir
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	code := 0
	var results []*chaos.BenchResult
	var peer *chaos.PeerResult
	for i, name := range fs.Args() {
		if name == peerScenario {
			res, err := chaos.Peer(ctx, cfg.Bin, filepath.Join(*logRoot, name), peerProject)
			if err != nil {
				fmt.Fprintf(os.Stderr, "snapsweep-chaos bench %s: %v\n", name, err)
				code = 1
			}
			peer = res
			continue
		}
		c := cfg
		c.Name = name
		// A Pub/Sub and Firestore project of its own per scenario run: the
		// index keeps two names that share their first characters apart
		// (three-projects and three-projects-paced) within the 30 allowed.
		c.Project = fmt.Sprintf("snapsweep-bench-%s-%d-%s", hex.EncodeToString(suffix), i, name)
		c.Project = strings.TrimRight(c.Project[:min(len(c.Project), 30)], "-")
		c.LogDir = filepath.Join(*logRoot, name)
		scenarios[name](&c)
		res, err := chaos.Bench(ctx, c)
		if err != nil {
			fmt.Fprintf(os.Stderr, "snapsweep-chaos bench %s: %v\n", name, err)
			code = 1
		}
		if res != nil {
			results = append(results, res)
		}
	}
	printBench(results, peer)
	return code
}

// peerScenario deletes one-project's snapshots with gcloud instead, on
// the same fake and quota.
const peerScenario = "gcloud-peer"

var peerProject = chaos.BenchProject{ID: "bench-a", QuotaPerMinute: 300, Snapshots: 900}

func printBench(results []*chaos.BenchResult, peer *chaos.PeerResult) {
	if len(results) > 0 {
		printTable(results)
	}
	fmt.Println()
	if peer != nil {
		fmt.Printf("%s: `%s` deleted %d of %d snapshots in %.1f s and exited %d (%d delete calls, %d refused as over quota); its last line: %q\n\n",
			peerScenario, peer.Command, peer.Deleted, peer.Snapshots, peer.DurationS, peer.ExitCode, peer.DeleteCalls, peer.QuotaErrors, peer.LastLine)
	}
	for _, r := range results {
		if r.LatencyP50 > 0 {
			fmt.Printf("%s: %d tasks, task.completed published → last snapshot deleted: p50 %s, p99 %s, max %s\n",
				r.Name, r.Tasks, r.LatencyP50.Round(10*time.Millisecond), r.LatencyP99.Round(10*time.Millisecond), r.LatencyMax.Round(10*time.Millisecond))
		}
	}
}

func printTable(results []*chaos.BenchResult) {
	fmt.Println("| scenario | project | quota/min | snapshots | deleted | whole minutes (deleted) | deleted per quota minute ÷ quota | deletes/s first→last | quota errors (per instance per minute) | worst instance-minute (where) |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range results {
		for _, p := range r.Projects {
			var mins []string
			for _, m := range p.Minutes {
				mins = append(mins, fmt.Sprintf("%s %d", m.Minute, m.Deleted))
			}
			where := ""
			if p.WorstAt != "" {
				where = " (" + p.WorstAt + ")"
			}
			fmt.Printf("| %s | %s | %d | %d | %d | %s | %.2f | %.1f | %d (%.2f) | %d%s |\n", r.Name, p.ID, p.QuotaPerMinute, p.Snapshots, p.Deleted,
				strings.Join(mins, ", "), p.QuotaRatio, p.TopSpeed, p.QuotaErrors, p.QuotaErrorsPerInstanceMinute, p.WorstInstanceMinute, where)
		}
	}
}
