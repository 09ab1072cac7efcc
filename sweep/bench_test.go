package sweep_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"cloud.google.com/go/firestore"

	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/internal/fscount"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
)

// BenchmarkSweepReads measures the Firestore documents one sweep reads for
// registries of growing size with the same work in each (100 expired
// snapshots): the reads must follow the work, not the registry.
//
//	go test -run '^$' -bench BenchmarkSweepReads -benchtime 1x ./sweep/
func BenchmarkSweepReads(b *testing.B) {
	for _, size := range []int{1_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("registry=%d", size), func(b *testing.B) {
			benchSweep(b, size)
		})
	}
}

func benchSweep(b *testing.B, size int) {
	emulators.Require(b, emulators.Firestore)
	ctx := context.Background()
	f := newFixture(b)
	counter := fscount.New()
	opts, err := counter.Options()
	if err != nil {
		b.Fatal(err)
	}
	fs, err := firestore.NewClient(ctx, f.project, opts...)
	if err != nil {
		b.Fatal(err)
	}
	defer fs.Close()
	reg := store.NewFirestore(fs)
	const expired = 100
	bw := fs.BulkWriter(ctx)
	for i := range size {
		s := &store.Snapshot{Project: f.project, Name: fmt.Sprintf("snap-%06d", i), SessionID: "s1", TaskID: fmt.Sprintf("t%d", i%500),
			State: store.Active, CreatedAt: f.now, RegisteredAt: f.now, UpdatedAt: f.now, ExpiresAt: f.now.Add(72 * time.Hour)}
		if i < expired {
			s.CreatedAt, s.RegisteredAt, s.ExpiresAt = t0, t0, t0.Add(72*time.Hour)
		}
		if _, err := bw.Set(fs.Collection(store.CollectionSnapshots).Doc(s.Key().ID()), s); err != nil {
			b.Fatal(err)
		}
	}
	bw.End()
	cfg := f.cfg
	cfg.Store = reg
	cfg.MaxLive = size * 2
	sw := sweep.New(cfg)
	counter.Reset()
	b.ResetTimer()
	var rep *sweep.Report
	for b.Loop() {
		rep, err = sw.Run(ctx, true, "") // dry run: the same reads every iteration
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	reads, writes, _ := counter.Snapshot()
	perRun := float64(reads) / float64(b.N)
	b.ReportMetric(perRun, "docs-read/sweep")
	b.ReportMetric(float64(writes)/float64(b.N), "docs-written/sweep")
	b.ReportMetric(perRun/float64(expired), "reads/expired-snapshot")
	b.Logf("registry %d, expired found %d, documents read per sweep %.0f (report's own count %d); step times %v", size, rep.Expired.Found, perRun, rep.Reads, rep.StepsMs)
	// One real run on top: it also claims the expired snapshots and runs
	// the reconcile pass (a bounded batch of live records per run), which
	// a dry run skips.
	counter.Reset()
	real, err := sw.Run(ctx, false, "")
	if err != nil {
		b.Fatal(err)
	}
	realReads, realWrites, _ := counter.Snapshot()
	b.ReportMetric(float64(realReads), "docs-read/real-sweep")
	b.ReportMetric(float64(realWrites), "docs-written/real-sweep")
	b.Logf("real sweep: %d documents read, %d written; scheduled %d, reconcile checked %d", realReads, realWrites, real.Used, real.Reconcile.Checked)
}
