package main

import (
	"context"
	"encoding/json"
	"github.com/snapsweep/snapsweep/status"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/gce/gcefake"
)

// storageMetric sums an int64 counter or gauge by its reason attribute
// ("" for points without one).
func (e *atkEnv) storageMetric(name string) map[string]int64 {
	e.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int64{}
	add := func(dps []metricdata.DataPoint[int64]) {
		for _, dp := range dps {
			v, _ := dp.Attributes.Value("reason")
			out[v.AsString()] += dp.Value
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				add(d.DataPoints)
			case metricdata.Gauge[int64]:
				add(d.DataPoints)
			}
		}
	}
	return out
}

// TestCostFiguresOfASession drives a session with known sizes through the
// service and checks the exact figures in `snapsweep report`, `sessions
// show`, /status and the metrics; a size still UPDATING is counted by its
// disk-size bound until the sweep reads it again; a price file is applied;
// a location without a price is reported, not guessed.
//
//	deleted   d1  4 GiB ARCHIVE  us           $0.024 → $0.096/month avoided
//	retained  r1  1 GiB STANDARD us           $0.065 → $0.065/month
//	running   a1  2 GiB STANDARD us-central1  $0.05  → $0.10/month (UPDATING at first: disk 10 GiB)
//	held      h1  3 GiB STANDARD europe-west1 → no default price
func TestCostFiguresOfASession(t *testing.T) {
	t.Parallel()
	atkBackends(t, func(t *testing.T, fs bool) {
		e := newAtkEnv(t, atkOptions{firestore: fs})
		const session = "c1"
		t0 := e.clock.Now()
		sizes := map[string]gcefake.Size{
			"d1": {StorageBytes: 4 << 30, DiskSizeGb: 50, Status: "UP_TO_DATE", Locations: []string{"us"}, SnapshotType: "ARCHIVE"},
			"r1": {StorageBytes: 1 << 30, DiskSizeGb: 50, Status: "UP_TO_DATE", Locations: []string{"us"}, SnapshotType: "STANDARD"},
			"a1": {StorageBytes: 2 << 30, DiskSizeGb: 10, Locations: []string{"us-central1"}, SnapshotType: "STANDARD"}, // UPDATING for a minute
			"h1": {StorageBytes: 3 << 30, DiskSizeGb: 50, Status: "UP_TO_DATE", Locations: []string{"europe-west1"}, SnapshotType: "STANDARD"},
		}
		tasks := map[string]string{"d1": "vm-done", "r1": "vm-failed", "a1": "vm-run", "h1": "vm-run"}
		for _, name := range []string{"d1", "r1", "a1", "h1"} {
			e.reported(atkProject, session, tasks[name], name, t0)
			e.fake.SetSize(atkProject, name, sizes[name])
		}
		e.must(atkEv("c-done", "task.completed", session, "vm-done", t0.Add(time.Second), nil),
			atkEv("c-failed", "task.failed", session, "vm-failed", t0.Add(time.Second), nil))
		e.flush()
		if code, out := e.cli("hold", atkProject+"/h1", "--reason", "audit"); code != 0 {
			t.Fatalf("hold: %s", out)
		}
		if st := e.state(atkProject, "d1"); st != "deleted" {
			t.Fatalf("setup: d1 is %s, want deleted", st)
		}

		report := func(args ...string) *cost.Report {
			t.Helper()
			code, out := e.cli(append([]string{"report", "--project", e.gcp, "--session", session, "-o", "json"}, args...)...)
			if code != 0 {
				t.Fatalf("report: %s", out)
			}
			var r cost.Report
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("report -o json: %v\n%s", err, out)
			}
			return &r
		}
		approx := cmpopts.EquateApprox(0, 1e-9)

		// First sweep: a1 is still UPDATING: counted by its disk's size.
		e.sweep()
		if got := report().Sessions[session].Kept[cost.Running]; got.NotFinal != 1 || got.Bytes != 10<<30 {
			t.Errorf("running while UPDATING: %+v; want 1 not final, bounded by the 10 GiB disk", got)
		}

		// A later sweep reads it again: the final size is counted.
		e.clock.Advance(2 * time.Minute)
		e.sweep()
		rep := report()
		retained := e.rec(atkProject, "r1")
		until := retained.RetainUntil
		if retained.ExpiresAt.After(until) {
			until = retained.ExpiresAt
		}
		retentionCost := 0.065 * until.Sub(e.clock.Now()).Hours() / 730
		want := &cost.Figures{
			Deleted: cost.Amount{Snapshots: 1, Bytes: 4 << 30, MonthlyCost: 0.096},
			Kept: map[cost.Reason]cost.Amount{
				cost.Retained: {Snapshots: 1, Bytes: 1 << 30, MonthlyCost: 0.065},
				cost.Running:  {Snapshots: 1, Bytes: 2 << 30, MonthlyCost: 0.10},
				cost.Held:     {Snapshots: 1, Bytes: 3 << 30, Unpriced: 1},
			},
			KeptTotal:     cost.Amount{Snapshots: 3, Bytes: 6 << 30, MonthlyCost: 0.165, Unpriced: 1},
			RetentionCost: retentionCost,
		}
		if diff := cmp.Diff(want, rep.Sessions[session], approx); diff != "" {
			t.Errorf("snapsweep report (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]cost.MissingPrice{{Where: "STANDARD in europe-west1", Snapshots: 1, Bytes: 3 << 30}}, rep.Missing); diff != "" {
			t.Errorf("missing prices (-want +got):\n%s", diff)
		}

		// The table and sessions show say the same, "up to" included.
		_, table := e.cli("report", "--project", e.gcp, "--session", session)
		_, show := e.cli("sessions", "show", session, "--project", e.gcp)
		for _, text := range []string{table, show} {
			for _, s := range []string{"deleted 1 snapshots holding up to 4.00 GiB ($0.10/month avoided)", "kept 3 holding 6.00 GiB ($0.17/month)", "europe-west1"} {
				if !strings.Contains(text, s) {
					t.Errorf("output lacks %q:\n%s", s, text)
				}
			}
		}

		// /status?session= gives the exact figures on the service's clock.
		rec := httptest.NewRecorder()
		e.svc.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/status?session="+session, nil))
		var st status.Session
		if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil {
			t.Fatalf("/status?session: %v\n%s", err, rec.Body.String())
		}
		if diff := cmp.Diff(want, st.Storage, approx); diff != "" {
			t.Errorf("/status?session (-want +got):\n%s", diff)
		}
		var all status.Report
		if err := json.Unmarshal([]byte(e.status()), &all); err != nil || all.Storage == nil {
			t.Fatalf("/status: %v", err)
		}
		if diff := cmp.Diff(*want, all.Storage.Overall, approx); diff != "" {
			t.Errorf("/status overall (-want +got):\n%s", diff)
		}

		// Metrics: freed by the engine, kept by reason from the sweep.
		if diff := cmp.Diff(map[string]int64{"": 4 << 30}, e.storageMetric("snapsweep.storage.freed")); diff != "" {
			t.Errorf("snapsweep.storage.freed (-want +got):\n%s", diff)
		}
		wantKept := map[string]int64{"retained": 1 << 30, "running": 2 << 30, "held": 3 << 30, "deleting": 0, "refused": 0, "failed": 0}
		if diff := cmp.Diff(wantKept, e.storageMetric("snapsweep.storage.kept")); diff != "" {
			t.Errorf("snapsweep.storage.kept (-want +got):\n%s", diff)
		}

		// A price file replaces the defaults: europe-west1 is priced.
		path := filepath.Join(t.TempDir(), "prices.yaml")
		body := "source: contract\ntakenOn: \"2026-10-01\"\nperGiBMonth:\n  STANDARD:\n    region: {europe-west1: 0.04, us-central1: 0.04}\n    multi-region: {us: 0.06}\n  ARCHIVE:\n    multi-region: {us: 0.02}\n"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		over := report("--price-file", path)
		if diff := cmp.Diff(cost.Amount{Snapshots: 1, Bytes: 3 << 30, MonthlyCost: 0.12}, over.Sessions[session].Kept[cost.Held], approx); diff != "" {
			t.Errorf("held with the price file (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(0.08, over.Sessions[session].Deleted.MonthlyCost, approx); diff != "" || len(over.Missing) != 0 {
			t.Errorf("deleted with the price file (-want +got):\n%s\nmissing %v", diff, over.Missing)
		}
	})
}
