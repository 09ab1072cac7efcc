package sweep_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
)

// TestOrphanCheckDecidesLikeTheSweep: the one orphan decision that the
// sweep's scan and `snapsweep orphans` share. A live record of another
// snapshot of the same name (a reused name) does not make the snapshot
// registered — the CLI used to say it did while the sweep adopted it.
func TestOrphanCheckDecidesLikeTheSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	reg := store.NewMemory()
	if _, err := reg.CreateSession(ctx, &store.Session{SessionID: "s1", State: store.SessionRunning, StartedAt: now.Add(-5 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	put := func(name string, st store.State, id string) {
		t.Helper()
		if err := reg.PutSnapshot(ctx, &store.Snapshot{Project: "proj-a", Name: name, SessionID: "s1", TaskID: "t1", State: st, ComputeID: id,
			CreatedAt: now.Add(-3 * time.Hour), RegisteredAt: now.Add(-3 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	put("live-same", store.Active, "11")
	put("live-id-unknown", store.Active, "")
	put("live-other", store.Active, "12")
	put("closed-same", store.Deleted, "13")
	put("closed-other", store.Deleted, "14")
	old, young := now.Add(-2*time.Hour), now.Add(-10*time.Minute)
	check := &sweep.OrphanCheck{Store: reg, Policy: lifecycle.Policy{Projects: events.NewAllowlist([]string{"proj-a"})}, SessionLabel: "migration-session"}
	type verdict struct {
		Registered, Closed, Orphan, Known, Adopt, InGrace, Unknown bool
	}
	for _, tc := range []struct {
		name, id, session string
		created           time.Time
		want              verdict
	}{
		{"live-same", "11", "s1", old, verdict{Registered: true}},
		{"live-id-unknown", "21", "s1", old, verdict{Registered: true}}, // the first read binds the id
		{"live-other", "22", "s1", old, verdict{Orphan: true, Known: true, Adopt: true}},
		{"closed-same", "13", "s1", old, verdict{Closed: true}},
		{"closed-other", "23", "s1", old, verdict{Orphan: true, Known: true, Adopt: true}},
		{"unreported-old", "24", "s1", old, verdict{Orphan: true, Known: true, Adopt: true}},
		{"unreported-young", "25", "s1", young, verdict{Orphan: true, Known: true, InGrace: true}},
		{"other-deployment", "26", "s9", old, verdict{Orphan: true, Unknown: true}},
	} {
		sn := gce.Snapshot{Name: tc.name, ID: tc.id, Labels: map[string]string{"migration-session": tc.session}, CreationTime: tc.created}
		l, err := check.Check(ctx, "proj-a", sn, now)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := verdict{Registered: l.Registered, Closed: l.Closed, Orphan: l.Orphan(), Known: l.KnownSession,
			Adopt: l.Adoption.Adopt, InGrace: l.Adoption.InGrace, Unknown: l.Adoption.Unknown}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
	// Sessions are looked up once: 8 snapshot reads and 2 session reads.
	if check.Reads != 10 {
		t.Errorf("reads = %d, want 10", check.Reads)
	}
}
