package chaos

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

func testWorkload() *Workload {
	return Generate(WorkloadConfig{Project: "chaos-test-project", Sessions: 5, TasksMin: 6, TasksMax: 10, SnapsMax: 4,
		WrongLabels: 6, InUse: 5, SlowOps: 3, Seed: 7})
}

func TestGenerateIsRepeatableAndValid(t *testing.T) {
	t.Parallel()
	a, b := testWorkload(), testWorkload()
	if len(a.Events) != len(b.Events) || len(a.Deliveries) != len(b.Deliveries) {
		t.Fatalf("same seed, different workloads: %d/%d events, %d/%d deliveries", len(a.Events), len(b.Events), len(a.Deliveries), len(b.Deliveries))
	}
	for i := range a.Deliveries {
		if a.Deliveries[i] != b.Deliveries[i] {
			t.Fatalf("same seed, different delivery order at %d", i)
		}
	}
	created := map[string]int{}
	perEvent := map[int]int{}
	for _, d := range a.Deliveries {
		perEvent[d]++
	}
	for i, ev := range a.Events {
		decoded, err := events.Decode(ev.Data)
		if err != nil {
			t.Fatalf("event %s does not decode: %v", ev.ID, err)
		}
		if decoded.Type == events.SnapshotCreated {
			created[decoded.Snapshot.Name]++
		}
		if n := perEvent[i]; n < 1 || n > 3 {
			t.Errorf("event %s delivered %d times, want 1-3", ev.ID, n)
		}
	}
	for _, sn := range a.Snaps {
		if created[sn.Name] != 1 {
			t.Errorf("snapshot %s has %d snapshot.created events", sn.Name, created[sn.Name])
		}
	}
}

func TestGenerateMarksWhatTheRulesSay(t *testing.T) {
	t.Parallel()
	w := testWorkload()
	c := w.Counts()
	if c["wrong-label"] != 6 || c["in-use"] != 5 || c["slow-op"] != 3 {
		t.Errorf("counts %v: want 6 wrong labels, 5 in use, 3 slow", c)
	}
	for _, sn := range w.Snaps {
		labels := sn.Labels(labelKey)
		switch {
		case sn.WrongLabel == "" && labels[labelKey] != sn.Session:
			t.Errorf("%s: label %q, want %q", sn.Name, labels[labelKey], sn.Session)
		case sn.WrongLabel != "" && labels[labelKey] == sn.Session:
			t.Errorf("%s: wrong-label snapshot carries the right label", sn.Name)
		}
		if (sn.InUse > 0 || sn.SlowOp) && !sn.Eligible() {
			t.Errorf("%s: in use or slow but not eligible", sn.Name)
		}
		if sn.Eligible() && sn.WantState() != store.Deleted {
			t.Errorf("%s: eligible, want state %s", sn.Name, sn.WantState())
		}
		if sn.Outcome == StillRunning && !sn.JobDeleted && sn.WantState() != store.Active {
			t.Errorf("%s: running task, want state %s", sn.Name, sn.WantState())
		}
	}
	if _, err := json.Marshal(w.Counts()); err != nil {
		t.Fatal(err)
	}
}

// TestWorkloadNeverStampsTheFuture: at fleet scale (thousands of events a
// second apart) the stream must still lie in the past; snapsweep rejects
// events stamped beyond its clock-skew bound as future_time.
func TestWorkloadNeverStampsTheFuture(t *testing.T) {
	t.Parallel()
	w := Generate(WorkloadConfig{Project: "snapsweep-chaos-t", Sessions: 90, TasksMin: 9, TasksMax: 15, SnapsMax: 4, Seed: 3})
	if len(w.Events) < 5000 {
		t.Fatalf("only %d events; the test wants a fleet-scale stream", len(w.Events))
	}
	now := time.Now()
	var prev time.Time
	for _, e := range w.Events {
		var ev struct {
			Time time.Time `json:"time"`
		}
		if err := json.Unmarshal(e.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if !ev.Time.Before(now) {
			t.Fatalf("event %s stamped %s, not before now (%s)", e.ID, ev.Time, now)
		}
		if !ev.Time.After(prev) {
			t.Fatalf("event %s stamped %s, not after the one before (%s)", e.ID, ev.Time, prev)
		}
		prev = ev.Time
	}
}
