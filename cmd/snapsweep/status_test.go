package main

import (
	"encoding/json"
	"github.com/snapsweep/snapsweep/status"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/store"
)

// TestStatusHealthReportIsJSON: /status's lastHealth.report is the stored
// report as a JSON object, not JSON inside a string; a stored report that
// is not JSON still shows, as a string.
func TestStatusHealthReportIsJSON(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		stored string
		want   any
	}{
		{`{"runId":"r1","status":"ok","checks":[{"name":"firestore-read","status":"ok"}]}`,
			map[string]any{"runId": "r1", "status": "ok", "checks": []any{map[string]any{"name": "firestore-read", "status": "ok"}}}},
		{"not json", "not json"},
	}
	for _, c := range cases {
		b, err := json.Marshal(status.Report{Health: status.NewHealth(store.HealthRecord{At: at, Status: "ok", Report: c.stored})})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			LastHealth struct {
				At     string `json:"at"`
				Status string `json:"status"`
				Report any    `json:"report"`
			} `json:"lastHealth"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, got.LastHealth.Report); diff != "" || got.LastHealth.At != "2026-12-01T10:00:00Z" {
			t.Errorf("lastHealth of %q (-want +got):\n%s\n%s", c.stored, diff, b)
		}
	}
}

// TestZeroTimesAreOmitted: a record's unset times are left out of JSON,
// not printed as 0001-01-01T00:00:00Z.
func TestZeroTimesAreOmitted(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, v := range []any{
		store.Snapshot{Name: "s", CreatedAt: at},
		store.Session{SessionID: "s", StartedAt: at},
		store.Task{TaskID: "t", StateTime: at},
		store.Rejected{ID: "r", ReceivedAt: at},
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
