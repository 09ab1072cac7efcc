package cleanup_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// Workload of BenchmarkCleanupThroughput. The figures it reports are
// written into BENCHMARKS.md by scripts/bench.sh.
const (
	// benchScale is how much faster than real time the shared clock of the
	// fake and the engine runs: one quota minute takes 12 s.
	benchScale = 5
	// benchMinutes is how many whole quota minutes are measured; every
	// project gets enough snapshots to keep its quota busy for them and a
	// tenth of a minute more (benchFill), so that the last measured minute
	// is full.
	benchMinutes = 2
	benchFill    = 0.1
	// benchOverdrive is the engine's delete rate of a project as a share of
	// its quota: above it, so that the quota binds and the engine's pause
	// until the next whole minute is what keeps the project at its quota.
	benchOverdrive = 1.1
	benchWorkers   = 200 // concurrent Handle calls, as Pub/Sub push delivers them
	benchOpLatency = 200 * time.Millisecond
	// benchRedelivery is how long (real time) a nacked message waits before
	// it is delivered again.
	benchRedelivery = time.Second
	benchLabel      = "migration-session"
	benchSession    = "bench-session"
)

// benchProject is one project of the workload and its delete quota.
type benchProject struct {
	name     string
	perMin   int // the fake's delete quota per wall-clock minute
	snapshot int // snapshots to delete
}

// scaledClock is the benchmark's clock: it starts at a whole minute and
// runs benchScale times faster than real time. It drives the fake (quota
// minutes, operation latency) and the engine (its clock, its sleeps, its
// rate limiters); HTTP, the client's operation polls and the store run in
// real time.
type scaledClock struct {
	base, start time.Time
}

// newScaledClock returns a clock standing a minute before its base until
// run is called. The base lies an hour in the past, so that the engine's
// deadline checks (which compare its clock with real request deadlines)
// never give up early.
func newScaledClock() *scaledClock {
	return &scaledClock{base: time.Now().Add(-time.Hour).Truncate(time.Minute)}
}

// run starts the clock at its base, a whole minute. Call it before any
// goroutine that reads the clock starts.
func (c *scaledClock) run() { c.start = time.Now() }

func (c *scaledClock) Now() time.Time {
	if c.start.IsZero() {
		return c.base.Add(-time.Minute)
	}
	return c.base.Add(time.Since(c.start) * benchScale)
}

// Sleep waits d of the clock's time: d/benchScale of real time.
func (c *scaledClock) Sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d / benchScale):
		return ctx.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// quotaRun is what one run measured, by project.
type quotaRun struct {
	elapsed      time.Duration // real time, first delivery to last acknowledgement
	deliveries   int
	redeliveries int
	projects     []projectRun
}

type projectRun struct {
	benchProject
	accepted []int // delete calls Compute accepted in each measured quota minute
	refused  []int // delete calls answered 403 rateLimitExceeded in each measured minute
	deleted  int
}

// fraction is the mean of deletions per quota minute ÷ quota over the
// measured minutes.
func (p projectRun) fraction() float64 {
	sum := 0
	for _, n := range p.accepted {
		sum += n
	}
	return float64(sum) / float64(len(p.accepted)*p.perMin)
}

func (p projectRun) minFraction() float64 {
	return float64(slices.Min(p.accepted)) / float64(p.perMin)
}

func (p projectRun) quotaErrorsPerMinute() float64 {
	sum := 0
	for _, n := range p.refused {
		sum += n
	}
	return float64(sum) / float64(len(p.refused))
}

// BenchmarkCleanupThroughput measures how close the engine keeps every
// project to its own Compute delete quota, counted as Compute counts it:
// per project, in synchronized wall-clock minutes. gcefake enforces the
// quota (403 rateLimitExceeded) and runs delete operations of 200 ms; the
// engine reaches it over loopback HTTP through the real client, paced at
// 1.1 × each project's quota (so the quota binds and the pause until the
// next whole minute keeps the project at it), with the default
// concurrency (16 per instance, shared equally by the projects).
// Messages are driven the way Pub/Sub push does: 200 concurrent Handle
// calls, redelivering (after 1 s) every message the engine asks to retry.
//
// The fake and the engine share a clock that runs 5× faster than real time
// (a quota minute takes 12 s), so two whole quota minutes per project are
// measured in well under a minute.
//
//   - one-project: quota 600/min.
//   - three-projects: quotas 60, 300 and 1,200/min at once; each must reach
//     its own quota, whatever the others do.
//
// Reported per project: deletions per quota minute ÷ quota (the mean and
// the worst of the two minutes) and quota errors per minute.
//
// Run it once per figure: go test -run '^$' -bench CleanupThroughput -benchtime 1x ./cleanup/
func BenchmarkCleanupThroughput(b *testing.B) {
	b.Run("one-project", func(b *testing.B) {
		benchQuota(b, []benchProject{{name: "bench-a", perMin: 600}})
	})
	b.Run("three-projects", func(b *testing.B) {
		benchQuota(b, []benchProject{{name: "bench-slow", perMin: 60}, {name: "bench-mid", perMin: 300}, {name: "bench-fast", perMin: 1200}})
	})
}

func benchQuota(b *testing.B, projects []benchProject) {
	var runs []quotaRun
	for b.Loop() {
		runs = append(runs, runQuotaWorkload(b, projects))
	}
	k := float64(len(runs))
	for i, p := range projects {
		var frac, worst, errs float64
		worst = 1e9
		for _, r := range runs {
			frac += r.projects[i].fraction()
			worst = min(worst, r.projects[i].minFraction())
			errs += r.projects[i].quotaErrorsPerMinute()
		}
		unit := ""
		if len(projects) > 1 {
			unit = fmt.Sprintf("q%d-", p.perMin)
		}
		b.ReportMetric(frac/k, unit+"quota-fraction")
		b.ReportMetric(worst, unit+"worst-minute-fraction")
		b.ReportMetric(errs/k, unit+"quota-errors/min")
	}
	var redeliveries float64
	for _, r := range runs {
		redeliveries += float64(r.redeliveries)
	}
	b.ReportMetric(redeliveries/k, "redeliveries")

	last := runs[len(runs)-1]
	b.Logf("quota minutes (last iteration; clock %d× real time, %d workers, engine rate %.1f× quota, op latency %s, real time %s, %d deliveries)",
		benchScale, benchWorkers, benchOverdrive, benchOpLatency, last.elapsed.Round(time.Millisecond), last.deliveries)
	b.Logf("%-11s %7s %9s %-22s %-16s %9s %12s", "project", "quota", "snapshots", "accepted per minute", "403 per minute", "fraction", "errors/min")
	for _, p := range last.projects {
		b.Logf("%-11s %7d %9d %-22s %-16s %9.3f %12.1f", p.name, p.perMin, p.snapshot, fmt.Sprint(p.accepted), fmt.Sprint(p.refused),
			p.fraction(), p.quotaErrorsPerMinute())
	}
}

// runQuotaWorkload registers the projects' snapshots, deletes them with
// benchWorkers concurrent deliveries, checks that every one is gone and
// none was deleted twice, and returns what it measured. Only the
// deliveries are timed.
func runQuotaWorkload(b *testing.B, projects []benchProject) quotaRun {
	b.Helper()
	b.StopTimer()
	ctx := context.Background()
	clk := newScaledClock()
	quota := map[string]int{}
	fake := gcefake.New(gcefake.Options{Latency: benchOpLatency, Now: clk.Now, SizingTime: -1})
	var names []string
	rates := map[string]float64{}
	for i, p := range projects {
		quota[p.name] = p.perMin
		if err := fake.SetQuota(p.name, gcefake.GroupWrites, p.perMin); err != nil {
			b.Fatal(err)
		}
		names = append(names, p.name)
		rates[p.name] = benchOverdrive * float64(p.perMin) / 60
		projects[i].snapshot = int((benchMinutes + benchFill) * float64(p.perMin))
	}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	client, err := gce.New(ctx, gce.Config{Endpoint: srv.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	mem := store.NewMemory()
	engine := cleanup.NewEngine(cleanup.EngineConfig{
		Store: mem, Compute: client, SessionLabel: benchLabel,
		Policy:        lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist(names)},
		RateByProject: rates, Concurrency: 16, OpWait: 5 * time.Second,
		Now: clk.Now, Sleep: clk.Sleep,
		Owner: "bench",
	})

	at := clk.base.Add(-time.Hour)
	var msgs []events.CleanupMessage
	for _, p := range projects {
		for i := range p.snapshot {
			name := fmt.Sprintf("snap-%05d", i)
			tk := store.TaskKey{SessionID: benchSession, TaskID: fmt.Sprintf("%s-task-%04d", p.name, i/3)}
			if i%3 == 0 {
				if _, err := mem.UpdateTask(ctx, tk, func(*store.Task) (*store.Task, error) {
					return &store.Task{State: store.TaskSucceeded, StateTime: at, FinishedAt: at}, nil
				}); err != nil {
					b.Fatal(err)
				}
			}
			rec := &store.Snapshot{Project: p.name, Name: name, SessionID: benchSession, TaskID: tk.TaskID,
				State: store.CleanupPending, CreatedAt: at, RegisteredAt: at, UpdatedAt: at, CleanupRequestedAt: at,
				ExpiresAt: at.Add(72 * time.Hour)}
			// The registry knows the Compute id, as from an event that sent it.
			rec.ComputeID = strconv.FormatUint(fake.AddSnapshot(p.name, name, map[string]string{benchLabel: benchSession}), 10)
			if err := mem.PutSnapshot(ctx, rec); err != nil {
				b.Fatal(err)
			}
			msgs = append(msgs, events.CleanupMessage{Project: p.name, Name: name, SessionID: benchSession,
				TaskID: tk.TaskID, Reason: events.ReasonTaskCompleted, RequestedAt: at})
		}
	}
	// Push delivers the projects' messages interleaved.
	rnd := rand.New(rand.NewPCG(1, 2))
	rnd.Shuffle(len(msgs), func(i, j int) { msgs[i], msgs[j] = msgs[j], msgs[i] })

	var run quotaRun
	var (
		mu      sync.Mutex
		errs    []error
		pending sync.WaitGroup
		wg      sync.WaitGroup
	)
	queue := make(chan events.CleanupMessage, len(msgs)) // never more than all outstanding
	pending.Add(len(msgs))
	for _, m := range msgs {
		queue <- m
	}
	b.StartTimer()
	// The measured quota minutes start now, at a whole minute of the clock.
	clk.run()
	start := clk.base
	for range benchWorkers {
		wg.Go(func() {
			for m := range queue {
				out, err := engine.Handle(ctx, m)
				retry := errors.Is(err, cleanup.ErrRetryLater) || (err == nil && out.Result == cleanup.ResultPending)
				mu.Lock()
				run.deliveries++
				switch {
				case retry:
					run.redeliveries++
				case err != nil:
					errs = append(errs, fmt.Errorf("%s/%s: %w", m.Project, m.Name, err))
				case out.Result != cleanup.ResultDeleted && out.Result != cleanup.ResultAlreadyGone:
					errs = append(errs, fmt.Errorf("%s/%s: result %s (%s)", m.Project, m.Name, out.Result, out.Why))
				}
				mu.Unlock()
				if retry {
					time.AfterFunc(benchRedelivery, func() { queue <- m })
					continue
				}
				pending.Done()
			}
		})
	}
	pending.Wait()
	run.elapsed = time.Since(clk.start)
	b.StopTimer()
	close(queue)
	wg.Wait()

	if len(errs) > 0 {
		b.Fatalf("%d messages failed for good, e.g. %v", len(errs), errs[0])
	}
	byName := map[string]*projectRun{}
	for _, p := range projects {
		pr := &projectRun{benchProject: p, accepted: make([]int, benchMinutes), refused: make([]int, benchMinutes)}
		byName[p.name] = pr
	}
	for _, c := range fake.Calls() {
		if c.Method != "snapshots.delete" {
			continue
		}
		minute := int(c.Time.Sub(start) / time.Minute)
		if minute < 0 || minute >= benchMinutes {
			continue
		}
		switch pr := byName[c.Project]; {
		case c.Status == 200:
			pr.accepted[minute]++
		case c.Status == 403:
			pr.refused[minute]++
		}
	}
	var problems []string
	for _, m := range msgs {
		if fake.Exists(m.Project, m.Name) {
			problems = append(problems, m.Project+"/"+m.Name+" still exists")
		}
		if got := fake.SuccessfulDeletes(m.Project, m.Name); got > 1 {
			problems = append(problems, fmt.Sprintf("%s/%s deleted %d times", m.Project, m.Name, got))
		} else if got == 1 {
			byName[m.Project].deleted++
		}
		rec, err := mem.GetSnapshot(ctx, store.Key{Project: m.Project, Name: m.Name})
		if err != nil || rec.State != store.Deleted {
			problems = append(problems, fmt.Sprintf("%s/%s: registry state %v (%v), want deleted", m.Project, m.Name, rec, err))
		}
	}
	if len(problems) > 0 {
		b.Fatalf("%d problems after the run: %s", len(problems), strings.Join(problems[:min(5, len(problems))], "; "))
	}
	for _, p := range projects {
		run.projects = append(run.projects, *byName[p.name])
	}
	b.StartTimer()
	return run
}
