package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/store"
)

// noEnv is an environment without FIRESTORE_EMULATOR_HOST: the demo's
// registry is in memory (TestMain sets the variable for the process).
func noEnv(string) (string, bool) { return "", false }

// TestDemoReportMatchesComputeFake runs the demo with a small size and a
// fixed seed and checks its report against what the fake Compute API saw:
// every snapshot it calls deleted was deleted exactly once, nothing twice,
// and the refused, retained and running snapshots (and the orphan) exist.
func TestDemoReportMatchesComputeFake(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, progress bytes.Buffer
	res, err := Run(ctx, Options{Sessions: 2, Tasks: 8, Seed: 42, Out: &out, Progress: &progress, LogOut: io.Discard, Lookup: noEnv})
	if err != nil {
		t.Fatalf("demo: %v\nreport:\n%s\nprogress:\n%s", err, out.String(), progress.String())
	}
	rep, fake, p := res.Report, res.Fake, res.Plan.Project

	deletedOnce, planned := 0, 0
	var refused, kept []string
	for _, task := range res.Plan.tasks() {
		for _, s := range task.Snapshots {
			planned++
			switch n := fake.SuccessfulDeletes(p, s.Name); {
			case n == 1:
				deletedOnce++
			case n > 1:
				t.Errorf("%s deleted %d times", s.Name, n)
			}
			switch {
			case s.WrongLabel:
				refused = append(refused, s.Name)
			case task.Outcome != outcomeSucceeded:
				kept = append(kept, s.Name)
			}
		}
	}
	if rep.Deleted != deletedOnce {
		t.Errorf("report says %d deleted; the Compute fake deleted %d snapshots once", rep.Deleted, deletedOnce)
	}
	if st := fake.Stats(); st.Deleted != deletedOnce {
		t.Errorf("the fake deleted %d snapshots in all, %d of them once: something was deleted twice", st.Deleted, deletedOnce)
	}
	if rep.Registered != planned {
		t.Errorf("report says %d registered; the jobs reported %d", rep.Registered, planned)
	}
	if len(refused) != 1 || len(rep.Kept.Refused) != 1 || !strings.HasSuffix(rep.Kept.Refused[0].Snapshot, "/"+refused[0]) {
		t.Errorf("refused: planned %v, report %+v", refused, rep.Kept.Refused)
	}
	for _, name := range refused {
		if !fake.Exists(p, name) || fake.DeleteCalls(p, name) != 0 {
			t.Errorf("refused snapshot %s: exists=%v delete calls=%d; want it kept with no delete call", name, fake.Exists(p, name), fake.DeleteCalls(p, name))
		}
	}
	if len(kept) == 0 {
		t.Fatal("the plan has no failed or running task; pick another seed")
	}
	for _, name := range kept {
		if !fake.Exists(p, name) || fake.SuccessfulDeletes(p, name) != 0 {
			t.Errorf("%s of a failed or running task was deleted", name)
		}
	}
	if got := rep.Kept.Retained + rep.Kept.Running; got != len(kept) {
		t.Errorf("report keeps %d retained + running; the plan has %d", got, len(kept))
	}
	if !fake.Exists(p, res.Plan.Orphan) || len(rep.Kept.Orphans) != 1 {
		t.Errorf("orphan: exists=%v, report %v; want it kept and adopted", fake.Exists(p, res.Plan.Orphan), rep.Kept.Orphans)
	}
	if diff := cmp.Diff(map[string]int{"bad_json": 1, "project_not_allowed": 1}, rep.Rejected); diff != "" {
		t.Errorf("rejected (-want +got):\n%s", diff)
	}
	for _, c := range fake.Calls() {
		if c.Project != p {
			t.Errorf("a snapshot outside the allowlist was touched: %+v", c)
		}
	}
	if !rep.Verified || rep.Latency.Samples != rep.Deleted || rep.DeletesPerSecond <= 0 {
		t.Errorf("report: verified=%v problems=%v latency samples=%d of %d deleted, %.1f deletes/s",
			rep.Verified, rep.Problems, rep.Latency.Samples, rep.Deleted, rep.DeletesPerSecond)
	}
	// The registry agrees with the report.
	n, err := res.Store.CountSnapshots(ctx, store.Query{States: []store.State{store.Deleted}})
	if err != nil || int(n) != rep.Deleted {
		t.Errorf("registry counts %d deleted (%v), report %d", n, err, rep.Deleted)
	}
	text := out.String()
	// The report ends with the savings line, whose deleted storage is the
	// sum of the sizes the Compute fake gave the deleted snapshots.
	var freed int64
	var byUs int
	page, err := res.Store.ListSnapshots(ctx, store.Query{States: []store.State{store.Deleted}, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range page.Snapshots {
		if s.DeletedBy != "snapsweep" {
			continue // gone otherwise: no saving claimed
		}
		byUs++
		id, err := strconv.ParseUint(s.ComputeID, 10, 64)
		if err != nil {
			t.Fatalf("%s deleted without a Compute id", s.Key())
		}
		freed += gcefake.DefaultSize(id).StorageBytes
	}
	lines := strings.Split(strings.TrimSpace(text), "\n")
	wantLine := fmt.Sprintf("deleted %d snapshots holding up to %s (", byUs, cost.Bytes(freed))
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "savings") || !strings.Contains(last, wantLine) || freed == 0 {
		t.Errorf("last line %q; want the savings line with %q", last, wantLine)
	}
	for _, want := range []string{"registered", "deleted", "retained", "refused", "rejected", "p50", "p99", "deletes/s", "verified:"} {
		if !strings.Contains(text, want) {
			t.Errorf("report lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, `"severity"`) || strings.Contains(progress.String(), `"severity"`) {
		t.Error("service logs leaked into the demo's output")
	}
}

// TestDemoPlanIsDeterministic: one seed, one simulation.
func TestDemoPlanIsDeterministic(t *testing.T) {
	t.Parallel()
	a := makeDemoPlan("p", 3, 10, 7, "")
	b := makeDemoPlan("p", 3, 10, 7, "")
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different plans (-first +second):\n%s", diff)
	}
	if c := makeDemoPlan("p", 3, 10, 8, ""); cmp.Equal(a, c) {
		t.Error("seeds 7 and 8 give the same plan")
	}
	outcomes := map[string]int{}
	for _, task := range a.tasks() {
		outcomes[task.Outcome]++
	}
	for _, o := range []string{outcomeSucceeded, outcomeFailed, outcomeRunning} {
		if outcomes[o] == 0 {
			t.Errorf("the plan has no %s task: %v", o, outcomes)
		}
	}
}
