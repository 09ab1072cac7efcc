package cleanup_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/internal/fscount"
	"github.com/snapsweep/snapsweep/store"
)

// Workload of BenchmarkSessionJudgement.
const (
	judgeSnapshots = 2000 // snapshots of the one completed session
	judgeWorkers   = 32   // deletions finishing side by side (two instances' slots)
	// judgeBound stops the burst after this long: judging every snapshot
	// in a transaction on the one session document does not finish 2,000
	// in reasonable time on the emulator.
	judgeBound = 3 * time.Minute
)

// BenchmarkSessionJudgement finishes every snapshot of a 2,000-snapshot
// completed session at once, each followed by the judgement the engine asks
// for (as Engine.record does), against the Firestore emulator: it reports
// the transactions and writes that reach the session document, the aborted
// ones, and the wall time, then the sweep's judgement that settles the
// verdict. Only the judge's client is counted (the snapshot records are
// written through another one), so every counted write is a session write.
//
// every-snapshot judges at once after every snapshot (JudgeNow: what the
// engine did before the debounce); debounced is the engine's JudgeSession.
// A burst still running after judgeBound is stopped and reported as is.
//
//	bash scripts/emulators.sh go test -run '^$' -bench BenchmarkSessionJudgement -benchtime 1x ./cleanup/
func BenchmarkSessionJudgement(b *testing.B) {
	emulators.Require(b, emulators.Firestore)
	for _, mode := range []string{"debounced", "every-snapshot"} {
		b.Run(mode, func(b *testing.B) {
			benchJudgement(b, func(j *cleanup.Judge) func(context.Context, string) (store.Outcome, error) {
				if mode == "debounced" {
					return j.JudgeSession
				}
				return j.JudgeNow
			})
		})
	}
}

func benchJudgement(b *testing.B, judgeOf func(*cleanup.Judge) func(context.Context, string) (store.Outcome, error)) {
	ctx := context.Background()
	for range b.N {
		b.StopTimer()
		project := emulators.ProjectID(b)
		seed, err := firestore.NewClient(ctx, project)
		if err != nil {
			b.Fatal(err)
		}
		counter := fscount.New()
		opts, err := counter.Options()
		if err != nil {
			b.Fatal(err)
		}
		judged, err := firestore.NewClient(ctx, project, opts...)
		if err != nil {
			b.Fatal(err)
		}
		seedReg, reg := store.NewFirestore(seed), store.NewFirestore(judged)
		const session = "judge-bench"
		at := time.Now().UTC().Truncate(time.Microsecond)
		bw := seed.BulkWriter(ctx)
		for i := range judgeSnapshots {
			s := &store.Snapshot{Project: "bench-proj", Name: fmt.Sprintf("snap-%05d", i), SessionID: session, TaskID: fmt.Sprintf("t%d", i%200),
				State: store.Deleting, CreatedAt: at, RegisteredAt: at, UpdatedAt: at}
			if _, err := bw.Set(seed.Collection(store.CollectionSnapshots).Doc(s.Key().ID()), s); err != nil {
				b.Fatal(err)
			}
		}
		bw.End()
		if _, err := seedReg.UpdateSession(ctx, session, func(*store.Session) (*store.Session, error) {
			return &store.Session{State: store.SessionCompleted, StartedAt: at, CompletedAt: at, Outcome: store.OutcomePending}, nil
		}); err != nil {
			b.Fatal(err)
		}
		j := &cleanup.Judge{Store: reg, Tolerance: 0.05}
		judge := judgeOf(j)
		counter.Reset()
		var failed, done atomic.Int64
		next := atomic.Int64{}
		var wg sync.WaitGroup
		b.StartTimer()
		start := time.Now()
		for range judgeWorkers {
			wg.Go(func() {
				for time.Since(start) < judgeBound {
					i := next.Add(1) - 1
					if i >= judgeSnapshots {
						return
					}
					key := store.Key{Project: "bench-proj", Name: fmt.Sprintf("snap-%05d", i)}
					if _, err := seedReg.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
						next := *cur
						next.State, next.DeletedAt = store.Deleted, time.Now().UTC()
						return &next, nil
					}); err != nil {
						b.Error(err)
						return
					}
					if _, err := judge(ctx, session); err != nil {
						failed.Add(1) // the engine drops it: the sweep judges again
					}
					done.Add(1)
				}
			})
		}
		wg.Wait()
		burst := time.Since(start)
		b.StopTimer()
		reads, writes, methods := counter.Snapshot()
		// The sweep's judgement settles what the burst left.
		counter.Reset()
		v, err := j.JudgeNow(ctx, session)
		if err != nil {
			b.Fatal(err)
		}
		sreads, swrites, _ := counter.Snapshot()
		got, err := reg.GetSession(ctx, session)
		if err != nil {
			b.Fatal(err)
		}
		finished := done.Load()
		if finished == judgeSnapshots && (v != store.OutcomeCleaned || got.Outcome != store.OutcomeCleaned || got.Deleted != judgeSnapshots) {
			b.Errorf("after the sweep's judgement: verdict %s, stored %s with %d deleted; want cleaned with %d", v, got.Outcome, got.Deleted, judgeSnapshots)
		}
		b.ReportMetric(float64(finished), "snapshots")
		b.ReportMetric(float64(methods["BeginTransaction"]), "session-txns")
		b.ReportMetric(float64(writes), "session-writes")
		b.ReportMetric(float64(methods["Rollback"]+int(failed.Load())), "aborted")
		b.ReportMetric(float64(reads), "reads")
		b.ReportMetric(burst.Seconds(), "burst-s")
		b.ReportMetric(float64(writes)/burst.Seconds(), "session-writes/s")
		b.Logf("%d of %d snapshots finished by %d workers in %s (bound %s): %d judgements, %d transactions on the session document (%d writes, %.1f/s), %d rollbacks, %d judgements failed, %d documents read; the sweep's judgement then read %d and wrote %d: %s with %d deleted",
			finished, judgeSnapshots, judgeWorkers, burst.Round(time.Millisecond), judgeBound, finished, methods["BeginTransaction"], writes, float64(writes)/burst.Seconds(),
			methods["Rollback"], failed.Load(), reads, sreads, swrites, got.Outcome, got.Deleted)
		judged.Close()
		seed.Close()
	}
}
