package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestThroughputCountsWholeMinutesFromTheFirstDelete(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var samples []callSample
	// No delete call for 20 s, then 6 deletions a second, but the quota
	// (120/min) refuses everything past 120 in a minute, as Compute does.
	deleted, calls, quotaErrs := 0, 0, 0
	used := map[int]int{}
	for s := 0; s <= 200; s++ {
		at := base.Add(time.Duration(s) * time.Second)
		if s > 20 {
			for range 6 {
				calls++
				if used[s/60] < 120 {
					used[s/60]++
					deleted++
				} else {
					quotaErrs++
				}
			}
		}
		samples = append(samples, callSample{At: at, Deleted: deleted, DeleteCalls: calls, QuotaErrors: quotaErrs})
	}
	end := base.Add(200 * time.Second)
	got := throughput(samples, 120, end)
	if !got.Start.Equal(base.Add(20 * time.Second)) {
		t.Errorf("start = %s, want the sample before the first delete call (10:00:20)", got.Start.Format(time.TimeOnly))
	}
	// Whole minutes inside [10:00:20, 10:03:20]: 10:01 and 10:02, each
	// delivering its full quota.
	want := []MinuteFigure{
		{Minute: "10:01", Deleted: 120, QuotaErrors: 240, Ratio: 1},
		{Minute: "10:02", Deleted: 120, QuotaErrors: 240, Ratio: 1},
	}
	if diff := cmp.Diff(want, got.Minutes); diff != "" {
		t.Errorf("minutes (-want +got):\n%s", diff)
	}
	if got.WholeMinuteRatio != 1 || got.Figure() != 1 {
		t.Errorf("whole-minute ratio = %v, figure = %v, want 1", got.WholeMinuteRatio, got.Figure())
	}
	if got.Deleted != deleted {
		t.Errorf("deleted = %d, want %d", got.Deleted, deleted)
	}
	// Pro rata over 180 s, 360 are granted, but the partial minutes at both
	// ends had their full quota too (Compute refills per minute): 480.
	if got.Ratio <= 1 {
		t.Errorf("pro-rata ratio = %.2f, want above 1 (partial minutes get their full quota)", got.Ratio)
	}
	if iv := checkFaultThroughput(got, 0.5); !iv.OK {
		t.Errorf("a run at its quota failed the throughput check: %v", iv)
	}
	slow := throughput(samples, 1200, end)
	if iv := checkFaultThroughput(slow, 0.5); iv.OK {
		t.Errorf("a run at a tenth of its quota passed the throughput check: %v", iv)
	}
}

func TestThroughputWithoutDeletesFails(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	got := throughput([]callSample{{At: at}, {At: at.Add(time.Minute)}}, 60, at.Add(time.Minute))
	if iv := checkFaultThroughput(got, 0.5); iv.OK {
		t.Errorf("a fault phase without a delete call passed: %v", iv)
	}
}

func TestBreakerOpenSumsOpenIntervalsPerIncarnation(t *testing.T) {
	t.Parallel()
	log := `{"time":"2026-12-02T10:00:00Z","message":"snapsweep serving"}
{"time":"2026-12-02T10:00:10Z","message":"compute circuit breaker changed state","from":"closed","to":"open"}
{"time":"2026-12-02T10:00:25Z","message":"compute circuit breaker changed state","from":"open","to":"half-open"}
{"time":"2026-12-02T10:00:26Z","message":"compute circuit breaker changed state","from":"half-open","to":"closed"}
not json
{"time":"2026-12-02T10:01:00Z","message":"compute circuit breaker changed state","from":"closed","to":"open"}
{"time":"2026-12-02T10:01:04Z","message":"snapsweep serving"}
{"time":"2026-12-02T10:02:00Z","message":"compute circuit breaker changed state","from":"closed","to":"open"}
`
	path := filepath.Join(t.TempDir(), "serve.log")
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	from := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	// 15 s, then 4 s until the process was restarted, then open from
	// 10:02:00 to the end of the phase at 10:02:30.
	got, err := breakerOpen(path, from, from.Add(150*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if want := 49 * time.Second; got != want {
		t.Errorf("open = %s, want %s", got, want)
	}
	// Clipped to the phase.
	got, _ = breakerOpen(path, from.Add(20*time.Second), from.Add(62*time.Second))
	if want := 7 * time.Second; got != want {
		t.Errorf("open within [10:00:20, 10:01:02] = %s, want %s", got, want)
	}
}

func TestProjectFiguresCountsWholeMinutesBetweenFirstAndLastDeletion(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 2, 10, 0, 40, 0, time.UTC)
	facts := map[string]fakeFacts{}
	// 100 a minute for 3 minutes from 10:00:40, one every 0.6 s, and a
	// snapshot that still exists.
	for i := range 300 {
		facts[fmt.Sprint(i)] = fakeFacts{DeletedAt: base.Add(time.Duration(i) * 600 * time.Millisecond)}
	}
	facts["kept"] = fakeFacts{Exists: true}
	got := projectFigures(BenchProject{ID: "p", QuotaPerMinute: 100, Snapshots: 301}, facts, 6, 2)
	want := []MinuteFigure{{Minute: "10:01", Deleted: 100, Ratio: 1}, {Minute: "10:02", Deleted: 100, Ratio: 1}}
	if diff := cmp.Diff(want, got.Minutes); diff != "" {
		t.Errorf("minutes (-want +got):\n%s", diff)
	}
	if got.Deleted != 300 || got.QuotaRatio != 1 {
		t.Errorf("deleted %d, ratio %v; want 300 and 1", got.Deleted, got.QuotaRatio)
	}
	// 6 quota errors, 2 instances, 179.4 s of deletions.
	if e := got.QuotaErrorsPerInstanceMinute; e < 0.99 || e > 1.01 {
		t.Errorf("quota errors per instance per minute = %.3f, want 1.00", e)
	}
	if s := got.TopSpeed; s < 1.66 || s > 1.67 {
		t.Errorf("top speed = %.3f/s, want 1/0.6", s)
	}
}
