package main

import (
	"context"
	"fmt"
	"github.com/snapsweep/snapsweep/service"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/internal/fscount"
	"github.com/snapsweep/snapsweep/store"
)

// genEvent is an event of a generated stream, with the project left open.
type genEvent struct {
	id, session, task string
	typ               events.Type
	at                time.Time
	snap              string
}

func (g genEvent) data(project string) []byte {
	var ref *events.SnapshotRef
	if g.snap != "" {
		ref = &events.SnapshotRef{Project: project, Name: g.snap}
	}
	return event(g.id, g.typ, g.session, g.task, g.at, ref)
}

// genStream builds a realistic stream: sessions of tasks that run, take
// snapshots and then succeed, fail, fail and succeed on a retry (with
// snapshots of its own), or keep running; some snapshots are deleted by the
// job itself.
func genStream(r *rand.Rand) (stream []genEvent, succeeded map[string]bool) {
	succeeded = map[string]bool{} // snapshot name -> its task succeeded
	// Far enough back that the retries' 20-minute gaps never stamp an
	// event in the future.
	at := time.Now().UTC().Add(-6 * time.Hour).Truncate(time.Second)
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
				at = at.Add(20 * time.Minute) // beyond SNAPSWEEP_MAX_CLOCK_SKEW
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

// registryState is what must match between the clean and the messy run.
func registryState(t *testing.T, e *env, stream []genEvent) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, g := range stream {
		if g.snap != "" {
			rec, err := e.svc.Store.GetSnapshot(context.Background(), store.Key{Project: e.project, Name: g.snap})
			if err != nil {
				t.Fatalf("snapshot %s: %v", g.snap, err)
			}
			out["snapshot "+g.snap] = string(rec.State)
		}
		if g.task != "" {
			task, err := e.svc.Store.GetTask(context.Background(), store.TaskKey{SessionID: g.session, TaskID: g.task})
			if err != nil {
				t.Fatalf("task %s: %v", g.task, err)
			}
			out["task "+g.task] = string(task.State)
		}
	}
	return out
}

// deliver posts each event until it is acknowledged, as Pub/Sub does,
// with a few deliveries in flight at once.
func deliver(t *testing.T, e *env, evs []genEvent) {
	t.Helper()
	h := e.svc.Handler
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i, g := range evs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for attempt := 0; ; attempt++ {
				code := push(t, h, "/pubsub/migration-events", fmt.Sprintf("m-%d", i), g.data(e.project))
				if code == http.StatusOK {
					return
				}
				if attempt > 20 {
					t.Errorf("event %s never acknowledged (last status %d)", g.id, code)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
	wg.Wait()
}

// TestPropertyDuplicatedReorderedStreamsConverge: for random streams,
// delivering each event 1–3 times in random order ends in the same registry
// as the clean in-order stream, and every snapshot of a succeeded task got
// at least one cleanup message.
func TestPropertyDuplicatedReorderedStreamsConverge(t *testing.T) {
	t.Parallel()
	for seed := range uint64(3) {
		t.Run(fmt.Sprintf("seed-%d", seed), func(t *testing.T) {
			t.Parallel()
			r := rand.New(rand.NewPCG(seed, 42))
			stream, succeeded := genStream(r)

			clean := startEnv(t, nil)
			for _, g := range stream {
				deliver(t, clean, []genEvent{g})
			}

			messy := startEnv(t, nil)
			sub := "projects/" + messy.project + "/subscriptions/cleanup-pull"
			if _, err := messy.ps.SubscriptionAdminClient.CreateSubscription(context.Background(), &pubsubpb.Subscription{
				Name: sub, Topic: messy.topic("snapshot-cleanup"), AckDeadlineSeconds: 60,
			}); err != nil {
				t.Fatal(err)
			}
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
			var mu sync.Mutex
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err := messy.ps.Subscriber(sub).Receive(ctx, func(_ context.Context, m *pubsub.Message) {
				msg, err := events.DecodeCleanup(m.Data)
				if err != nil {
					t.Errorf("bad cleanup message: %v", err)
				}
				mu.Lock()
				cleaned[msg.Name] = true
				mu.Unlock()
				m.Ack()
			})
			if err != nil && ctx.Err() == nil {
				t.Fatal(err)
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

// TestColdSessionBurstRunsNoSessionTransaction is the regression test of a
// race the ingest benchmark found: the first events of a new session all ran
// a transaction on the session document, and on a loaded emulator most of
// them aborted and needed redelivery. The session is now created with a
// does-not-exist precondition: a burst of n first events runs exactly n
// transactions (one per snapshot record), none on the session, and every
// event is answered 200 at its first delivery.
func TestColdSessionBurstRunsNoSessionTransaction(t *testing.T) {
	t.Parallel()
	counter := fscount.New()
	fsOpts, err := counter.Options()
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvWith(t, nil, service.Options{FirestoreOptions: fsOpts})
	h := e.svc.Handler
	at := time.Now().UTC()
	const n = 20
	counter.Reset()
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			data := event(fmt.Sprintf("cold-%d", i), events.SnapshotCreated, "cold-session", fmt.Sprintf("vm-%d", i), at,
				&events.SnapshotRef{Project: e.project, Name: fmt.Sprintf("cold-%d", i)})
			codes[i] = push(t, h, "/pubsub/migration-events", fmt.Sprintf("cold-%d", i), data)
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("first event %d of a new session: status %d, want 200 without redelivery", i, c)
		}
	}
	_, _, methods := counter.Snapshot()
	if got := methods["BeginTransaction"]; got != n {
		t.Errorf("%d first events of a new session ran %d transactions, want %d (one per snapshot, none on the session)", n, got, n)
	}
	s, err := e.svc.Store.GetSession(context.Background(), "cold-session")
	if err != nil || !s.StartedAt.Equal(at.Truncate(time.Microsecond)) {
		t.Errorf("session after the burst: %+v, %v", s, err)
	}

	// Late events older than the recorded start (half of a shuffled
	// stream) must not contend on the session either: the chaos run found
	// them livelocking when each moved the start back in a transaction.
	counter.Reset()
	for i := range n {
		wg.Go(func() {
			data := event(fmt.Sprintf("late-%d", i), events.SnapshotCreated, "cold-session", fmt.Sprintf("late-vm-%d", i), at.Add(-time.Hour),
				&events.SnapshotRef{Project: e.project, Name: fmt.Sprintf("late-%d", i)})
			codes[i] = push(t, h, "/pubsub/migration-events", fmt.Sprintf("late-%d", i), data)
		})
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("late event %d: status %d, want 200", i, c)
		}
	}
	_, _, methods = counter.Snapshot()
	if got := methods["BeginTransaction"]; got != n {
		t.Errorf("%d late events ran %d transactions, want %d (none on the session)", n, got, n)
	}
	// session.started alone moves the start back.
	if code := push(t, h, "/pubsub/migration-events", "started", event("started", events.SessionStarted, "cold-session", "", at.Add(-2*time.Hour), nil)); code != http.StatusOK {
		t.Fatalf("session.started: %d", code)
	}
	if s, err := e.svc.Store.GetSession(context.Background(), "cold-session"); err != nil || !s.StartedAt.Equal(at.Add(-2*time.Hour).Truncate(time.Microsecond)) {
		t.Errorf("session.started did not move the start back: %+v, %v", s, err)
	}
}
