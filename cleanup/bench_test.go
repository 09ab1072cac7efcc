package cleanup_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	benchSnapshots    = 2000 // parallel run
	benchSeqSnapshots = 100  // sequential baseline (one at a time takes ~0.3 s each)
	benchWorkers      = 200  // concurrent Handle calls, as Pub/Sub push delivers them
	benchQuota        = 100  // the fake's delete quota per whole second
	benchRate         = 95   // engine delete rate: just under the quota
	benchOpLatency    = 200 * time.Millisecond
	// benchRedelivery is how long a nacked message waits before it is
	// delivered again (the Pub/Sub emulator redelivers after about 1 s).
	benchRedelivery = time.Second
	benchLabel      = "migration-session"
	benchSession    = "bench-session"
	benchProject    = "bench-proj"
)

// cleanupRun is what one run of the cleanup workload measured.
type cleanupRun struct {
	n            int
	elapsed      time.Duration // first delivery to last acknowledgement
	deliveries   int           // Handle calls, redeliveries included
	redeliveries int           // ErrRetryLater or ResultPending answers
	results      map[cleanup.Result]int
	latencies    []time.Duration // of every Handle call

	deleteCalls         int
	deleteSpan          time.Duration // first to last delete call
	quotaErrors         int           // 403 answers to deletes
	quotaErrorsAfter1s  int           // ... more than 1 s after the start
	callsByMethod       map[string]int
	maxSuccessfulDelete int
	// Delete calls per whole second (the fake's quota window), as the fake
	// stamped them: the busiest second, the seconds over the quota, and
	// when the first 403 came (after the start).
	maxPerSecond   int
	secondsOver    int
	first403       time.Duration
	perSecondTrace string
}

func (r cleanupRun) deletesPerSec() float64 { return float64(r.n) / r.elapsed.Seconds() }

// deleteCallRate is the pace of delete calls between the first and the
// last: the limiter's rate, without the ramp-up and the final op wait.
func (r cleanupRun) deleteCallRate() float64 {
	if r.deleteCalls < 2 || r.deleteSpan <= 0 {
		return 0
	}
	return float64(r.deleteCalls-1) / r.deleteSpan.Seconds()
}

func (r cleanupRun) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	s := slices.Clone(r.latencies)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkCleanupThroughput measures how fast the engine deletes snapshots
// against a Compute fake with a 200 ms operation latency and a delete quota
// of 100 per second, reached over loopback HTTP through the real client,
// with the engine paced at 95 deletes/s. Messages are driven the way Pub/Sub
// push does: 200 concurrent Handle calls, redelivering (after 1 s) every
// message the engine asks to retry. A sequential baseline of 100 snapshots
// runs with the same engine settings in the same iteration, so the ratio
// between the two comes from one run.
//
// Run it once per figure: go test -run '^$' -bench CleanupThroughput -benchtime 1x ./cleanup/
// (ns/op is the whole iteration, setup and both runs; the figures are the
// reported metrics).
func BenchmarkCleanupThroughput(b *testing.B) {
	var par, seq []cleanupRun
	for b.Loop() {
		par = append(par, runCleanupWorkload(b, benchSnapshots, benchWorkers))
		seq = append(seq, runCleanupWorkload(b, benchSeqSnapshots, 1))
	}
	var pDPS, pCallRate, seqDPS, seqMS, ratio float64
	var quotaErr, quotaErrLate, redeliveries, busiest float64
	for i := range par {
		pDPS += par[i].deletesPerSec()
		pCallRate += par[i].deleteCallRate()
		quotaErr += float64(par[i].quotaErrors + seq[i].quotaErrors)
		quotaErrLate += float64(par[i].quotaErrorsAfter1s + seq[i].quotaErrorsAfter1s)
		redeliveries += float64(par[i].redeliveries)
		busiest = max(busiest, float64(par[i].maxPerSecond))
		seqDPS += seq[i].deletesPerSec()
		seqMS += float64(seq[i].elapsed.Milliseconds()) / float64(seq[i].n)
		ratio += par[i].deletesPerSec() / seq[i].deletesPerSec()
	}
	k := float64(len(par))
	b.ReportMetric(pDPS/k, "deletes/s")
	b.ReportMetric(pDPS/k/benchQuota, "quota-fraction")
	b.ReportMetric(pCallRate/k, "delete-calls/s")
	b.ReportMetric(quotaErr/k, "quota-errors")
	b.ReportMetric(quotaErrLate/k, "quota-errors-after-1s")
	b.ReportMetric(redeliveries/k, "redeliveries")
	b.ReportMetric(busiest, "max-delete-calls-in-a-second")
	b.ReportMetric(seqMS/k, "seq-ms/snapshot")
	b.ReportMetric(seqDPS/k, "seq-deletes/s")
	b.ReportMetric(ratio/k, "parallel/sequential")

	last, lastSeq := par[len(par)-1], seq[len(seq)-1]
	b.Logf("cleanup throughput (last iteration; quota %d/s, engine rate %d/s, concurrency 16, op latency %s)", benchQuota, benchRate, benchOpLatency)
	b.Logf("%-11s %9s %8s %10s %11s %10s %12s %9s %9s", "run", "snapshots", "workers", "elapsed", "deletes/s", "calls/s", "quota-errors", "p50", "p99")
	for _, r := range []struct {
		name string
		run  cleanupRun
		w    int
	}{{"parallel", last, benchWorkers}, {"sequential", lastSeq, 1}} {
		b.Logf("%-11s %9d %8d %10s %11.1f %10.1f %12d %9s %9s", r.name, r.run.n, r.w, r.run.elapsed.Round(time.Millisecond),
			r.run.deletesPerSec(), r.run.deleteCallRate(), r.run.quotaErrors,
			r.run.percentile(0.5).Round(time.Millisecond), r.run.percentile(0.99).Round(time.Millisecond))
	}
	b.Logf("sequential extrapolated to %d snapshots: %s; parallel/sequential = %.1fx",
		benchSnapshots, (lastSeq.elapsed / time.Duration(lastSeq.n) * benchSnapshots).Round(time.Second),
		last.deletesPerSec()/lastSeq.deletesPerSec())
	b.Logf("parallel: results %v, deliveries %d, compute calls %v", last.results, last.deliveries, last.callsByMethod)
	b.Logf("parallel: delete calls per whole second: max %d, %d seconds over the quota of %d, first 403 at %s after the start",
		last.maxPerSecond, last.secondsOver, benchQuota, last.first403.Round(time.Millisecond))
	b.Logf("parallel: delete calls/403s in each whole second: %s", last.perSecondTrace)
}

// runCleanupWorkload registers n snapshots, deletes them with workers
// concurrent deliveries, checks that every one is gone and none was deleted
// twice, and returns what it measured. Only the deliveries are timed.
func runCleanupWorkload(b *testing.B, n, workers int) cleanupRun {
	b.Helper()
	b.StopTimer()
	ctx := context.Background()
	fake := gcefake.New(gcefake.Options{Latency: benchOpLatency})
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
		Policy: lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{"proj-a", "proj-b", "bench-proj"})},
		Rate:   benchRate, Concurrency: 16, OpWait: 5 * time.Second, Budget: 10 * time.Second,
		// The fake's quota is per whole second (Compute's: per minute).
		QuotaRefill: func(now time.Time) time.Time { return now.Truncate(time.Second).Add(time.Second) },
		Owner:       "bench",
	})

	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Microsecond)
	msgs := make([]events.CleanupMessage, 0, n)
	for i := range n {
		name := fmt.Sprintf("snap-%05d", i)
		tk := store.TaskKey{SessionID: benchSession, TaskID: fmt.Sprintf("task-%04d", i/3)}
		if i%3 == 0 {
			if _, err := mem.UpdateTask(ctx, tk, func(*store.Task) (*store.Task, error) {
				return &store.Task{State: store.TaskSucceeded, StateTime: at, FinishedAt: at}, nil
			}); err != nil {
				b.Fatal(err)
			}
		}
		rec := &store.Snapshot{Project: benchProject, Name: name, SessionID: benchSession, TaskID: tk.TaskID,
			State: store.CleanupPending, CreatedAt: at, RegisteredAt: at, UpdatedAt: at, CleanupRequestedAt: at,
			ExpiresAt: at.Add(72 * time.Hour)}
		// The registry knows the Compute id, as from an event that sent it.
		rec.ComputeID = strconv.FormatUint(fake.AddSnapshot(benchProject, name, map[string]string{benchLabel: benchSession}), 10)
		if err := mem.PutSnapshot(ctx, rec); err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, events.CleanupMessage{Project: benchProject, Name: name, SessionID: benchSession,
			TaskID: tk.TaskID, Reason: events.ReasonTaskCompleted, RequestedAt: at})
	}

	run := cleanupRun{n: n, results: map[cleanup.Result]int{}}
	var (
		mu      sync.Mutex
		errs    []error
		pending sync.WaitGroup
		wg      sync.WaitGroup
	)
	queue := make(chan events.CleanupMessage, n) // never more than n outstanding
	pending.Add(n)
	for _, m := range msgs {
		queue <- m
	}
	b.StartTimer()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for m := range queue {
				t := time.Now()
				out, err := engine.Handle(ctx, m)
				d := time.Since(t)
				retry := errors.Is(err, cleanup.ErrRetryLater) || (err == nil && out.Result == cleanup.ResultPending)
				mu.Lock()
				run.deliveries++
				run.latencies = append(run.latencies, d)
				switch {
				case retry:
					run.redeliveries++
				case err != nil:
					errs = append(errs, fmt.Errorf("%s: %w", m.Name, err))
				default:
					run.results[out.Result]++
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
	run.elapsed = time.Since(start)
	b.StopTimer()
	close(queue)
	wg.Wait()

	if len(errs) > 0 {
		b.Fatalf("%d messages failed for good, e.g. %v", len(errs), errs[0])
	}
	var first, lastCall time.Time
	run.callsByMethod = map[string]int{}
	for _, c := range fake.Calls() {
		run.callsByMethod[c.Method]++
		if c.Method != "snapshots.delete" {
			continue
		}
		run.deleteCalls++
		if first.IsZero() {
			first = c.Time
		}
		lastCall = c.Time
		if c.Status == 403 {
			run.quotaErrors++
			if c.Time.After(start.Add(time.Second)) {
				run.quotaErrorsAfter1s++
			}
		}
	}
	run.deleteSpan = lastCall.Sub(first)
	perSec, rejected := map[int64]int{}, map[int64]int{}
	for _, c := range fake.Calls() {
		if c.Method != "snapshots.delete" {
			continue
		}
		perSec[c.Time.Unix()]++
		if c.Status == 403 {
			rejected[c.Time.Unix()]++
			if run.first403 == 0 {
				run.first403 = c.Time.Sub(start)
			}
		}
	}
	var trace []string
	for _, sec := range slices.Sorted(maps.Keys(perSec)) {
		run.maxPerSecond = max(run.maxPerSecond, perSec[sec])
		if perSec[sec] > benchQuota {
			run.secondsOver++
		}
		trace = append(trace, fmt.Sprintf("%d/%d", perSec[sec], rejected[sec]))
	}
	run.perSecondTrace = strings.Join(trace, " ")
	var problems []string
	for _, m := range msgs {
		if fake.Exists(m.Project, m.Name) {
			problems = append(problems, m.Name+" still exists")
		}
		got := fake.SuccessfulDeletes(m.Project, m.Name)
		run.maxSuccessfulDelete = max(run.maxSuccessfulDelete, got)
		if got > 1 {
			problems = append(problems, fmt.Sprintf("%s deleted %d times", m.Name, got))
		}
		rec, err := mem.GetSnapshot(ctx, store.Key{Project: m.Project, Name: m.Name})
		if err != nil || rec.State != store.Deleted {
			problems = append(problems, fmt.Sprintf("%s: registry state %v (%v), want deleted", m.Name, rec, err))
		}
	}
	if len(problems) > 0 {
		b.Fatalf("%d problems after the run (workers %d), e.g.: %v", len(problems), workers, problems[:min(5, len(problems))])
	}
	b.StartTimer()
	return run
}
