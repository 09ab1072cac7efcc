package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/internal/fscount"
	"github.com/snapsweep/snapsweep/service"
)

// The order-independence property test lives beside its code, in
// ingest/property_test.go (on store.Memory and on the Firestore emulator).

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
