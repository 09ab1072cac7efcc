package store

import (
	"encoding/json"
	"testing"
	"time"
)

// TestZeroTimesAreOmitted: a record's unset times are left out of JSON,
// not printed as 0001-01-01T00:00:00Z.
func TestZeroTimesAreOmitted(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, v := range []any{
		Snapshot{Name: "s", CreatedAt: at},
		Session{SessionID: "s", StartedAt: at},
		Task{TaskID: "t", StateTime: at},
		Rejected{ID: "r", ReceivedAt: at},
	} {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k, x := range m {
			if x == "0001-01-01T00:00:00Z" {
				t.Errorf("%T: %s is a zero time:\n%s", v, k, b)
			}
		}
	}
}
