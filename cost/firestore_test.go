package cost_test

import (
	"math"
	"testing"

	"github.com/snapsweep/snapsweep/cost"
)

func TestFirestoreBill(t *testing.T) {
	t.Parallel()
	p := cost.DefaultFirestorePrices()
	tests := []struct {
		name              string
		life, sweep       cost.Ops
		snapshots, sweeps int
		want              float64
	}{
		{"reads only", cost.Ops{Reads: 1}, cost.Ops{}, 100_000, 0, 0.03},
		{"writes only", cost.Ops{Writes: 1}, cost.Ops{}, 100_000, 0, 0.09},
		{"deletes only", cost.Ops{Deletes: 1}, cost.Ops{}, 100_000, 0, 0.01},
		{"life and sweeps", cost.Ops{Reads: 13, Writes: 7, Deletes: 2}, cost.Ops{Reads: 210, Writes: 5}, 10_000, 96, 0.104 + (210*96*0.03+5*96*0.09)/100_000},
	}
	for _, tc := range tests {
		got := cost.FirestoreBill(p, tc.life, tc.snapshots, tc.sweep, tc.sweeps)
		if math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: FirestoreBill = %.6f, want %.6f", tc.name, got, tc.want)
		}
	}
}
