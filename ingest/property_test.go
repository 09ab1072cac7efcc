package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/store"
)

// genEvent is an event of a generated stream.
type genEvent struct {
	id, session, task string
	typ               events.Type
	at                time.Time
	snap              string
}

// genStream builds a realistic stream: sessions of tasks that run, take
// snapshots and then succeed, fail, fail and succeed on a retry (with
// snapshots of its own), or keep running; some snapshots are deleted by the
// job itself. succeeded holds the snapshots whose task succeeded.
func genStream(r *rand.Rand) (stream []genEvent, succeeded map[string]bool) {
	succeeded = map[string]bool{}
	// Far enough back that the retries' 20-minute gaps never stamp an
	// event after the processor's clock.
	at := t0.Add(-6 * time.Hour)
	n := 0
	next := func(session, task string, typ events.Type, snap string) {
		n++
		at = at.Add(time.Second)
		stream = append(stream, genEvent{id: fmt.Sprintf("ev-%d", n), session: session, task: task, typ: typ, at: at, snap: snap})
	}
	for s := range 2 {
		session := fmt.Sprintf("sess-%d", s)
		next(session, "", events.SessionStarted, "")
		for t := range 2 + r.IntN(3) {
			task := fmt.Sprintf("vm-%d-%d", s, t)
			next(session, task, events.TaskStarted, "")
			var snaps []string
			for k := range 1 + r.IntN(3) {
				name := fmt.Sprintf("snap-%d-%d-%d", s, t, k)
				snaps = append(snaps, name)
				next(session, task, events.SnapshotCreated, name)
			}
			if r.IntN(5) == 0 {
				next(session, task, events.SnapshotDeleted, snaps[0])
				snaps = snaps[1:]
			}
			switch r.IntN(4) {
			case 0:
				next(session, task, events.TaskCompleted, "")
			case 1:
				next(session, task, events.TaskFailed, "")
				continue
			case 2:
				// Fails, then succeeds on a retry a while later: the failed
				// attempt's snapshots keep the failed retention (a retry
				// never shortens it), the retry's own snapshots are cleaned.
				next(session, task, events.TaskFailed, "")
				at = at.Add(20 * time.Minute) // beyond the clock-skew bound
				next(session, task, events.TaskStarted, "")
				snaps = []string{fmt.Sprintf("snap-%d-%d-retry", s, t)}
				next(session, task, events.SnapshotCreated, snaps[0])
				next(session, task, events.TaskCompleted, "")
			case 3:
				continue // still running
			}
			for _, name := range snaps {
				succeeded[name] = true
			}
		}
		next(session, "", events.SessionCompleted, "")
	}
	return stream, succeeded
}

// registryState is what must match between the clean and the messy run:
// every snapshot's and every task's state.
func registryState(t *testing.T, f *fixture, stream []genEvent) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, g := range stream {
		if g.snap != "" {
			out["snapshot "+g.snap] = string(f.state(t, g.snap))
		}
		if g.task != "" {
			task, err := f.reg.GetTask(ctx, store.TaskKey{SessionID: g.session, TaskID: g.task})
			if err != nil {
				t.Fatalf("task %s: %v", g.task, err)
			}
			out["task "+g.task] = string(task.State)
		}
	}
	return out
}

// deliver applies each event until it is applied, as Pub/Sub redelivers
// until acknowledged, with a few deliveries in flight at once. Only
// transient registry trouble (a Firestore transaction that aborted) may
// ask for a redelivery.
func deliver(t *testing.T, f *fixture, evs []genEvent) {
	t.Helper()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for _, g := range evs {
		e := ev(t, g.id, g.typ, g.session, g.task, g.at, g.snap)
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for attempt := 0; ; attempt++ {
				_, err := f.proc.Apply(context.Background(), e)
				if err == nil {
					return
				}
				if !errors.Is(err, store.ErrUnavailable) || attempt > 20 {
					t.Errorf("event %s not applied (attempt %d): %v", g.id, attempt, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// propertyConverges: for random streams, delivering each event 1–3 times
// in random order ends in the same registry as the clean in-order stream,
// and every snapshot of a succeeded task got at least one cleanup message.
func propertyConverges(t *testing.T, seeds uint64, registry func(t *testing.T) store.Registry) {
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 42))
			stream, succeeded := genStream(r)

			clean := newFixture(t, registry(t), []string{project}, false)
			for _, g := range stream {
				deliver(t, clean, []genEvent{g})
			}

			messy := newFixture(t, registry(t), []string{project}, false)
			var shuffled []genEvent
			for _, g := range stream {
				for range 1 + r.IntN(3) {
					shuffled = append(shuffled, g)
				}
			}
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			deliver(t, messy, shuffled)

			want, got := registryState(t, clean, stream), registryState(t, messy, stream)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("registry after duplicated, reordered delivery differs from the clean run (-clean +messy):\n%s", diff)
			}
			cleaned := map[string]bool{}
			for _, name := range messy.cleaned(t) {
				cleaned[name] = true
			}
			for name := range succeeded {
				if !cleaned[name] {
					t.Errorf("snapshot %s of a succeeded task got no cleanup message", name)
				}
			}
			t.Logf("%d events, %d deliveries, %d snapshots of succeeded tasks, %d cleaned", len(stream), len(shuffled), len(succeeded), len(cleaned))
		})
	}
}

// TestPropertyDuplicatedReorderedStreamsConverge runs the property on
// store.Memory (fast: many seeds).
func TestPropertyDuplicatedReorderedStreamsConverge(t *testing.T) {
	t.Parallel()
	propertyConverges(t, 20, func(*testing.T) store.Registry { return store.NewMemory() })
}

// TestPropertyDuplicatedReorderedStreamsConvergeFirestore runs it on the
// Firestore registry (the emulator; each run its own project), where
// transactions really contend.
func TestPropertyDuplicatedReorderedStreamsConvergeFirestore(t *testing.T) {
	t.Parallel()
	emulators.Require(t, emulators.Firestore)
	propertyConverges(t, 3, func(t *testing.T) store.Registry {
		fs, err := firestore.NewClient(context.Background(), emulators.ProjectID(t))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fs.Close() })
		return store.NewFirestore(fs)
	})
}
