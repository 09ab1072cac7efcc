package status_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/service"
	"github.com/snapsweep/snapsweep/service/servicetest"
	"github.com/snapsweep/snapsweep/status"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
)

// TestHealthReportIsJSON: /status's lastHealth.report is the stored
// report as a JSON object, not JSON inside a string; a stored report that
// is not JSON still shows, as a string.
func TestHealthReportIsJSON(t *testing.T) {
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
		b, err := json.Marshal(status.Report{Health: status.NewHealth(at, "ok", c.stored)})
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

// TestWireRecordsAreTheRegistryRecords: a session and a task on the wire
// encode exactly as the registry's records do (every field set, and none
// set: unset times are left out), so a field added to a record and not to
// the wire fails here.
func TestWireRecordsAreTheRegistryRecords(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sess := store.Session{SessionID: "s1", State: store.SessionCompleted, StartedAt: at, CompletedAt: at.Add(time.Hour),
		Outcome: store.OutcomeCleanedWithErrors, OutcomeAt: at.Add(2 * time.Hour), Deleted: 3, Failed: 1, UpdatedAt: at.Add(3 * time.Hour)}
	task := store.Task{SessionID: "s1", TaskID: "t1", State: store.TaskFailed, StateTime: at, StateEventID: "e1", FailedAt: at,
		FailureSeenAt: at.Add(time.Second), StartedAt: at.Add(-time.Hour), FinishedAt: at, Error: "disk busy", UpdatedAt: at}
	for _, c := range []struct {
		name       string
		record, on any
	}{
		{"session", sess, service.WireSession(sess)},
		{"task", task, service.WireTask(task)},
		{"empty session", store.Session{SessionID: "s"}, service.WireSession(store.Session{SessionID: "s"})},
		{"empty task", store.Task{TaskID: "t"}, service.WireTask(store.Task{TaskID: "t"})},
	} {
		want, _ := json.Marshal(c.record)
		got, _ := json.Marshal(c.on)
		var w, g map[string]any
		_ = json.Unmarshal(want, &w)
		_ = json.Unmarshal(got, &g)
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("%s on the wire (-registry +wire):\n%s", c.name, diff)
		}
		for k, v := range g {
			if v == "0001-01-01T00:00:00Z" {
				t.Errorf("%s: %s is a zero time: %s", c.name, k, got)
			}
		}
	}
}

// TestClient: the client against the service's own handler (servicetest:
// store.Memory, pstest, gcefake): the overall status, a session's, an
// unknown session, a sweep, and the answers it refuses.
func TestClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := servicetest.New(t, nil)
	c := env.Components(t)
	srv := httptest.NewServer(c.Handler)
	t.Cleanup(srv.Close)
	now := time.Now().UTC().Truncate(time.Second)
	if _, err := env.Reg.CreateSession(ctx, &store.Session{SessionID: "s1", State: store.SessionRunning, StartedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := env.Reg.PutSnapshot(ctx, &store.Snapshot{Project: servicetest.Project, Name: "snap-1", SessionID: "s1", TaskID: "t1",
		State: store.Retained, CreatedAt: now, UpdatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	client, err := status.NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}

	rep, err := client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts["retained"] != 1 || rep.Version != "v-test" || rep.Breaker != "closed" || len(rep.Sessions) != 1 || rep.Storage == nil {
		t.Errorf("status: %+v", rep)
	}

	st, err := client.Session(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if st.Session.SessionID != "s1" || st.Session.State != "running" || st.Counts["retained"] != 1 || st.Storage == nil {
		t.Errorf("session s1: %+v", st)
	}
	if _, err := client.Session(ctx, "s9"); !errors.Is(err, status.ErrSessionNotFound) {
		t.Errorf("unknown session: %v, want ErrSessionNotFound", err)
	}
	if _, err := client.Session(ctx, "Bad Id!"); err == nil || !strings.Contains(err.Error(), `invalid session id "Bad Id!"`) {
		t.Errorf("invalid id: %v, want it refused, naming the id", err)
	}

	var sw sweep.Report
	if err := client.Sweep(ctx, true, &sw); err != nil || !sw.DryRun {
		t.Errorf("sweep: %+v, %v; want a dry-run report", sw, err)
	}
}

// TestClientErrors: an answer other than 200 is an *HTTPError with the
// answer's error field (or its body, shortened); an answer that is not the
// expected JSON says so; a base URL that is not absolute http(s) is
// refused, naming it.
func TestClientErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name     string
		code     int
		body     string
		wantCode int
		want     string
	}{
		{"error field", 503, `{"error":"registry unavailable: deadline exceeded"}`, 503, "503 Service Unavailable: registry unavailable: deadline exceeded"},
		{"plain body", 502, "bad\n  gateway", 502, "502 Bad Gateway: bad gateway"},
		{"long body", 500, strings.Repeat("x", 500), 500, strings.Repeat("x", 100)},
		{"not JSON", 200, "<html>", 0, "decode answer"},
		{"no session record", 200, `{"counts":{},"sessions":[]}`, 0, "answer has no session record"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.code)
				_, _ = w.Write([]byte(tc.body))
			}))
			t.Cleanup(srv.Close)
			client, err := status.NewClient(srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = client.Session(ctx, "s1")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to say %q", err, tc.want)
			}
			var he *status.HTTPError
			if got := errors.As(err, &he); got != (tc.wantCode != 0) || (got && he.Code != tc.wantCode) {
				t.Errorf("error %v: HTTPError %v (%+v), want code %d", err, got, he, tc.wantCode)
			}
		})
	}
	for _, bad := range []string{"snapsweep.example", "://x", "ftp://x.example", "/status"} {
		if _, err := status.NewClient(bad, nil); err == nil || !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("NewClient(%q) = %v; want an error naming it", bad, err)
		}
	}
}
