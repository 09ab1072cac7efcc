package cost_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/store"
)

var now = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func size(gib float64, typ, loc string, readAt time.Time) *store.Size {
	return &store.Size{StorageBytes: int64(gib * cost.GiB), Status: "UP_TO_DATE", DiskSizeGb: 100, Type: typ, Locations: []string{loc}, ReadAt: readAt}
}

// Session records with known sizes, for the default prices:
//
//	deleted  a  10 GiB STANDARD us-central1  $0.05  → $0.50
//	deleted  b   4 GiB ARCHIVE  us           $0.024 → $0.096
//	retained c   2 GiB STANDARD us           $0.065 → $0.13, for 365 h (half a month) → $0.065
//	running  d   1 GiB STANDARD us-central1  → $0.05 (a's chain: 0.5 GiB before a's deletion)
//	running  e   UPDATING, disk 20 GiB       → bounded by 20 GiB, $1.00
//	held     f   3 GiB STANDARD europe-west1 → no price: reported
//	refused  g   never measured
//	failed   h   5 GiB STANDARD us-east1     → $0.25
//	deleted  i   by the job                  → gone otherwise
func sessionRecords() []store.Snapshot {
	before, deleted, after := now.Add(-3*time.Hour), now.Add(-2*time.Hour), now.Add(-time.Hour)
	r := func(name string, st store.State, z *store.Size) store.Snapshot {
		return store.Snapshot{Project: "proj-a", Name: name, SessionID: "wave-1", TaskID: "t-" + name, State: st, Size: z,
			SourceDisk: "disk-" + name}
	}
	a := r("a", store.Deleted, size(10, "STANDARD", "us-central1", deleted))
	a.DeletedBy, a.DeletedAt, a.SourceDisk = "snapsweep", deleted, "disk-1"
	b := r("b", store.Deleted, size(4, "ARCHIVE", "us", deleted))
	b.DeletedBy, b.DeletedAt = "snapsweep", deleted
	c := r("c", store.Retained, size(2, "STANDARD", "us", before))
	c.ExpiresAt, c.RetainUntil = now.Add(365*time.Hour), now.Add(365*time.Hour)
	d := r("d", store.Active, size(1, "STANDARD", "us-central1", after))
	d.PrevSize, d.SourceDisk = size(0.5, "STANDARD", "us-central1", before), "disk-1"
	e := r("e", store.Active, &store.Size{StorageBytes: 1 << 30, Status: store.Updating, DiskSizeGb: 20, Type: "STANDARD", Locations: []string{"us-central1"}, ReadAt: after})
	f := r("f", store.Held, size(3, "STANDARD", "europe-west1", after))
	g := r("g", store.Refused, nil)
	h := r("h", store.Failed, size(5, "STANDARD", "us-east1", after))
	i := r("i", store.Deleted, nil)
	i.DeletedBy = "job"
	return []store.Snapshot{a, b, c, d, e, f, g, h, i}
}

func TestComputeKnownSession(t *testing.T) {
	t.Parallel()
	rep := cost.Compute(sessionRecords(), cost.DefaultPrices(), now)
	got := rep.Sessions["wave-1"]
	want := &cost.Figures{
		Deleted: cost.Amount{Snapshots: 2, Bytes: 14 << 30, MonthlyCost: 0.596},
		Kept: map[cost.Reason]cost.Amount{
			cost.Retained: {Snapshots: 1, Bytes: 2 << 30, MonthlyCost: 0.13},
			cost.Running:  {Snapshots: 2, Bytes: 21 << 30, MonthlyCost: 1.05, NotFinal: 1},
			cost.Held:     {Snapshots: 1, Bytes: 3 << 30, Unpriced: 1},
			cost.Refused:  {Snapshots: 1, Unmeasured: 1},
			cost.Failed:   {Snapshots: 1, Bytes: 5 << 30, MonthlyCost: 0.25},
		},
		KeptTotal:     cost.Amount{Snapshots: 6, Bytes: 31 << 30, MonthlyCost: 1.43, NotFinal: 1, Unpriced: 1, Unmeasured: 1},
		RetentionCost: 0.065,
		GoneOtherwise: 1,
	}
	approx := cmpopts.EquateApprox(0, 1e-9)
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("session figures (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(*want, rep.Overall, approx); diff != "" {
		t.Errorf("overall = the one session's (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, rep.Projects["proj-a"], approx); diff != "" {
		t.Errorf("project = the one session's (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]cost.MissingPrice{{Where: "STANDARD in europe-west1", Snapshots: 1, Bytes: 3 << 30}}, rep.Missing); diff != "" {
		t.Errorf("missing prices (-want +got):\n%s", diff)
	}
	retention := 0.065
	if diff := cmp.Diff([]cost.Retention{{Project: "proj-a", Name: "c", SessionID: "wave-1", Until: now.Add(365 * time.Hour), Bytes: 2 << 30, Cost: &retention}}, rep.Retained, approx); diff != "" {
		t.Errorf("retained (-want +got):\n%s", diff)
	}
	before, after, freed := int64(10.5*cost.GiB), int64(1<<30), int64(9.5*cost.GiB)
	if diff := cmp.Diff([]cost.Chain{{Project: "proj-a", Chain: "disk-1", Deleted: 1, Kept: 1, Before: &before, After: &after, Freed: &freed}}, rep.Chains); diff != "" {
		t.Errorf("chains (-want +got):\n%s", diff)
	}
	line := cost.Line(rep.Overall, rep.Currency)
	wantLine := "deleted 2 snapshots holding up to 14.00 GiB ($0.60/month avoided); kept 6 holding 31.00 GiB ($1.43/month), of which 1 retained after a failure ($0.07 until their retention ends); 1 without a price; 1 never measured; 1 sizes not final (bounded by disk size)"
	if line != wantLine {
		t.Errorf("Line:\n got %s\nwant %s", line, wantLine)
	}
}

func TestPriceFileOverride(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "prices.yaml")
	body := `source: our contract, 2026
takenOn: "2026-10-01"
currency: USD
perGiBMonth:
  STANDARD:
    region: {europe-west1: 0.04, "*": 0.03}
    multi-region: {us: 0.06}
  ARCHIVE:
    multi-region: {us: 0.01}
`
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	prices, err := cost.LoadPrices(path)
	if err != nil {
		t.Fatalf("LoadPrices: %v", err)
	}
	rep := cost.Compute(sessionRecords(), prices, now)
	f := rep.Overall
	approx := cmpopts.EquateApprox(0, 1e-9)
	// a: 10 × 0.03 (region "*") + b: 4 × 0.01 = 0.34
	if diff := cmp.Diff(0.34, f.Deleted.MonthlyCost, approx); diff != "" {
		t.Errorf("deleted monthly (-want +got):\n%s", diff)
	}
	// f is priced now: 3 × 0.04.
	if diff := cmp.Diff(cost.Amount{Snapshots: 1, Bytes: 3 << 30, MonthlyCost: 0.12}, f.Kept[cost.Held], approx); diff != "" {
		t.Errorf("held (-want +got):\n%s", diff)
	}
	if len(rep.Missing) != 0 || !strings.HasPrefix(rep.Prices, "our contract, 2026; taken 2026-10-01") {
		t.Errorf("missing %v, prices %q; want none and the file's source", rep.Missing, rep.Prices)
	}
}

func TestPriceFileErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"empty":       "source: x\n",
		"bad class":   "perGiBMonth: {STANDARD: {regional: {us-central1: 0.05}}}\n",
		"wrong class": "perGiBMonth: {STANDARD: {region: {us: 0.05}}}\n",
		"bad type":    "perGiBMonth: {INSTANT: {region: {us-central1: 0.05}}}\n",
		"negative":    "perGiBMonth: {STANDARD: {region: {us-central1: -1}}}\n",
		"unknown key": "prices: {}\nperGiBMonth: {STANDARD: {region: {us-central1: 1}}}\n",
	} {
		path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := cost.LoadPrices(path); err == nil {
			t.Errorf("%s: LoadPrices accepted %q", name, body)
		}
	}
	if _, err := cost.LoadPrices(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadPrices of a missing file: no error")
	}
}

func TestDefaultPricesValid(t *testing.T) {
	t.Parallel()
	p := cost.DefaultPrices()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		typ, loc string
		want     float64
		ok       bool
	}{
		{"STANDARD", "us", 0.065, true}, {"STANDARD", "us-central1", 0.05, true},
		{"ARCHIVE", "us", 0.024, true}, {"", "us-east1", 0.05, true},
		{"STANDARD", "asia-northeast1", 0, false}, {"STANDARD", "eu", 0, false},
	} {
		got, ok := p.Price(tc.typ, []string{tc.loc})
		if got != tc.want || ok != tc.ok {
			t.Errorf("Price(%s, %s) = %v, %v; want %v, %v", tc.typ, tc.loc, got, ok, tc.want, tc.ok)
		}
	}
}
