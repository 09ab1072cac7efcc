package lifecycle_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// TestSizesRecordedByLifecycleOnly checks where a record's size comes
// from: the last check before the DELETE records the read's size, the
// sweep's measure records a changed size of a kept record (and of nothing
// else), and it never changes the state.
func TestSizesRecordedByLifecycleOnly(t *testing.T) {
	t.Parallel()
	p := policy()
	updating := &store.Size{StorageBytes: 1 << 30, Status: store.Updating, DiskSizeGb: 10, Type: "STANDARD", ReadAt: t0}
	final := &store.Size{StorageBytes: 3 << 30, Status: "UP_TO_DATE", DiskSizeGb: 10, Type: "STANDARD", ReadAt: t0.Add(time.Hour)}

	// Arm: the size of the read right before the delete.
	cur := rec(store.Active)
	cur.ComputeID = "7"
	succeeded := &store.Task{State: store.TaskSucceeded, StateTime: t0}
	msg := events.CleanupMessage{Project: "p", Name: "s", SessionID: "s1", TaskID: "t1", Reason: events.ReasonTaskCompleted}
	claimed, started, err := p.StartDeleteFor(cur, succeeded, msg, "o", time.Minute, t0)
	if err != nil || started.Lease == nil {
		t.Fatalf("StartDeleteFor: %v %+v", err, started)
	}
	armed, res, err := p.ArmFor(claimed, succeeded, *started.Lease, lifecycle.Observed{ComputeID: "7", Fresh: true, Size: final}, time.Minute, t0)
	if err != nil || !res.OK {
		t.Fatalf("ArmFor: %v %+v", err, res)
	}
	if diff := cmp.Diff(final, armed.Size); diff != "" {
		t.Errorf("armed size (-want +got):\n%s", diff)
	}

	cases := []struct {
		name  string
		state store.State
		had   *store.Size
		id    string
		want  *store.Size // nil: nothing written
	}{
		{"first read of a retained record", store.Retained, nil, "7", updating},
		{"an UPDATING size read again", store.Active, updating, "7", final},
		{"unchanged: nothing written", store.Held, final, "7", nil},
		{"another snapshot of the name: not measured", store.Active, updating, "8", nil},
		{"being cleaned: measured by the arm, not here", store.CleanupPending, nil, "7", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cur := rec(tc.state)
			cur.ComputeID, cur.Size = "7", tc.had
			read := final
			if tc.had == nil {
				read = updating
			}
			next, err := p.MeasureFor(cur, lifecycle.Observed{ComputeID: tc.id, Size: read}, t0.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if next != nil {
					t.Errorf("MeasureFor wrote %+v; want nothing", next.Size)
				}
				return
			}
			if next == nil || next.State != tc.state || next.LastTransition != string(lifecycle.Measure) {
				t.Fatalf("MeasureFor = %+v; want the size recorded, state %s kept", next, tc.state)
			}
			if diff := cmp.Diff(tc.want, next.Size); diff != "" {
				t.Errorf("size (-want +got):\n%s", diff)
			}
		})
	}
}
