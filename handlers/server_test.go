package handlers_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/handlers"
	"github.com/snapsweep/snapsweep/service/servicetest"
	"github.com/snapsweep/snapsweep/store"
)

const project = servicetest.Project

// server is the service's HTTP surface, built by service.NewComponents on
// store.Memory, pstest and gcefake (servicetest: the real clients of
// each), with the metrics it records.
type server struct {
	h       http.Handler
	reg     *store.Memory
	metrics *sdkmetric.ManualReader
}

func newServer(t *testing.T, settings map[string]string) *server {
	t.Helper()
	env := servicetest.New(t, settings)
	s := &server{reg: env.Reg, metrics: sdkmetric.NewManualReader()}
	env.Options.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(s.metrics))
	s.h = env.Components(t).Handler
	return s
}

// do sends one request and returns its status and body.
func (s *server) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, r)
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// rejected is the snapsweep.messages.rejected counter by endpoint~reason.
func (s *server) rejected(t *testing.T) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := s.metrics.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "snapsweep.messages.rejected" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				ep, _ := dp.Attributes.Value("endpoint")
				reason, _ := dp.Attributes.Value("reason")
				out[ep.AsString()+"~"+reason.AsString()] += dp.Value
			}
		}
	}
	return out
}

func envelope(id, data string) string {
	return string(handlers.NewPushEnvelope(handlers.PushMessage{Data: []byte(data), MessageID: id,
		PublishTime: time.Now(), Subscription: "projects/p/subscriptions/s"}).Encode())
}

func eventData(t *testing.T, e events.Event) string {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fields decodes a JSON body into its top-level fields that the case names.
func fields(t *testing.T, body string, names []string) map[string]any {
	t.Helper()
	if len(names) == 0 {
		return nil
	}
	var all map[string]any
	if err := json.Unmarshal([]byte(body), &all); err != nil {
		t.Fatalf("body %q is not a JSON object: %v", body, err)
	}
	out := map[string]any{}
	for _, n := range names {
		out[n] = all[n]
	}
	return out
}

// TestEndpoints drives every route of handlers.Server through the
// service's handler: methods, status codes, bodies, and malformed input
// acknowledged (200, so Pub/Sub stops redelivering it), recorded and
// counted.
func TestEndpoints(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC().Truncate(time.Second)
	created := eventData(t, events.Event{ID: "e1", Type: events.SnapshotCreated, Time: now.Add(-time.Minute), SessionID: "s1", TaskID: "t1",
		Snapshot: &events.SnapshotRef{Project: project, Name: "snap-1"}})
	cleanupMsg, err := events.CleanupMessage{Project: project, Name: "never-registered", SessionID: "s1", TaskID: "t1",
		Reason: events.ReasonTaskCompleted, RequestedAt: now}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		method, path, body string
		wantCode           int
		// want holds top-level fields of the JSON answer (nil: not JSON
		// or not compared); wantText is a part of a plain answer.
		want     map[string]any
		wantText string
	}
	tests := []struct {
		name string
		// steps run in order on one server.
		steps []step
		// rejected is the counter after the steps.
		rejected map[string]int64
	}{
		{name: "health", steps: []step{
			{method: "GET", path: "/health", wantCode: 200, want: map[string]any{"status": "ok"}},
			{method: "POST", path: "/health", wantCode: 405},
		}},
		{name: "ready", steps: []step{
			{method: "GET", path: "/ready", wantCode: 200, want: map[string]any{"ready": true,
				"checks": map[string]any{"firestore": "ok", "pubsub": "ok", "last-sweep": "ok", "compute": "ok"}}},
			{method: "DELETE", path: "/ready", wantCode: 405},
		}},
		{name: "unknown path", steps: []step{{method: "GET", path: "/nope", wantCode: 404}}},
		{name: "event applied, then a duplicate", steps: []step{
			{method: "POST", path: "/pubsub/migration-events", body: envelope("m1", created), wantCode: 200,
				want: map[string]any{"status": "applied", "scheduled": 0.0}},
			{method: "POST", path: "/pubsub/migration-events", body: envelope("m1", created), wantCode: 200,
				want: map[string]any{"status": "duplicate", "scheduled": 0.0}},
			{method: "GET", path: "/pubsub/migration-events", wantCode: 405},
			{method: "GET", path: "/status?session=s1", wantCode: 200,
				want: map[string]any{"counts": map[string]any{"active": 1.0, "retained": 0.0, "cleanup_pending": 0.0, "deleting": 0.0,
					"deleted": 0.0, "failed": 0.0, "refused": 0.0, "held": 0.0, "vanished": 0.0}}},
		}},
		{name: "malformed push acknowledged and counted", steps: []step{
			{method: "POST", path: "/pubsub/migration-events", body: `{"message":`, wantCode: 200,
				want: map[string]any{"status": "rejected", "reason": "bad_envelope"}},
			{method: "POST", path: "/pubsub/migration-events", body: envelope("m2", `{"id":`), wantCode: 200,
				want: map[string]any{"status": "rejected", "reason": "bad_json"}},
			{method: "POST", path: "/pubsub/migration-events", body: envelope("m3", strings.Replace(created, project, "someone-else", 1)), wantCode: 200,
				want: map[string]any{"status": "rejected", "reason": "project_not_allowed"}},
			{method: "POST", path: "/pubsub/snapshot-cleanup", body: envelope("m4", `{"project":"`+project+`"}`), wantCode: 200,
				want: map[string]any{"status": "rejected"}},
			{method: "POST", path: "/pubsub/migration-events", body: `{"message":{"data":"` + strings.Repeat("A", 1<<20+8) + `"}}`, wantCode: 413},
		}, rejected: map[string]int64{
			"migration-events~bad_envelope": 1, "migration-events~bad_json": 1, "migration-events~project_not_allowed": 1,
			"migration-events~too_large": 1, "snapshot-cleanup~missing_field": 1,
		}},
		{name: "cleanup of a snapshot the registry does not know", steps: []step{
			{method: "POST", path: "/pubsub/snapshot-cleanup", body: envelope("c1", string(cleanupMsg)), wantCode: 200},
			{method: "GET", path: "/pubsub/snapshot-cleanup", wantCode: 405},
		}},
		{name: "sweep", steps: []step{
			{method: "POST", path: "/scheduler/sweep", body: `{"dryRun":true}`, wantCode: 200, want: map[string]any{"dryRun": true}},
			{method: "POST", path: "/scheduler/sweep", body: `{"dryRun":"yes"}`, wantCode: 400, wantText: "dryRun must be a boolean"},
			{method: "POST", path: "/scheduler/sweep", body: `{"dryRun":true} {}`, wantCode: 400, wantText: "data after the JSON object"},
			{method: "GET", path: "/scheduler/sweep", wantCode: 405},
		}},
		{name: "status", steps: []step{
			{method: "GET", path: "/status", wantCode: 200, want: map[string]any{"breaker": "closed", "dryRun": false}},
			{method: "GET", path: "/status?session=nope", wantCode: 404},
			{method: "POST", path: "/status", wantCode: 405},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			for i, st := range tc.steps {
				code, body := s.do(t, st.method, st.path, st.body)
				if code != st.wantCode {
					t.Errorf("step %d: %s %s: status %d (%s), want %d", i, st.method, st.path, code, body, st.wantCode)
					continue
				}
				names := make([]string, 0, len(st.want))
				for n := range st.want {
					names = append(names, n)
				}
				if diff := cmp.Diff(st.want, fields(t, body, names)); diff != "" {
					t.Errorf("step %d: %s %s: answer (-want +got):\n%s", i, st.method, st.path, diff)
				}
				if !strings.Contains(body, st.wantText) {
					t.Errorf("step %d: %s %s: answer %q does not say %q", i, st.method, st.path, body, st.wantText)
				}
			}
			want := tc.rejected
			if want == nil {
				want = map[string]int64{}
			}
			if diff := cmp.Diff(want, s.rejected(t)); diff != "" {
				t.Errorf("snapsweep.messages.rejected (-want +got):\n%s", diff)
			}
		})
	}
}

// TestRejectedMessagesAreRecorded: an acknowledged rejection is kept in the
// registry for operators, with the reason and the payload.
func TestRejectedMessagesAreRecorded(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	if code, body := s.do(t, "POST", "/pubsub/migration-events", envelope("bad-1", `{"id":`)); code != 200 {
		t.Fatalf("status %d (%s), want 200", code, body)
	}
	recs, err := s.reg.ListRejected(context.Background(), 10)
	if err != nil {
		t.Fatal(err)
	}
	type kept struct{ MessageID, Endpoint, Reason, Payload string }
	var got []kept
	for _, r := range recs {
		got = append(got, kept{r.MessageID, r.Endpoint, r.Reason, r.Payload})
	}
	want := []kept{{"bad-1", "migration-events", "bad_json", `{"id":`}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rejected records (-want +got):\n%s", diff)
	}
}

// TestAuthGuardsPushAndScheduler: with OIDC on, the push and scheduler
// endpoints refuse a request without a token (401) and the probes and
// /status stay open (Cloud Run's IAM guards /status). auth's TestWiring
// covers a request with a good token.
func TestAuthGuardsPushAndScheduler(t *testing.T) {
	t.Parallel()
	s := newServer(t, map[string]string{
		"SNAPSWEEP_AUTH_AUDIENCE":         "https://snapsweep.example",
		"SNAPSWEEP_AUTH_SERVICE_ACCOUNTS": "push@proj-a.iam.gserviceaccount.com",
	})
	tests := []struct {
		method, path string
		want         int
	}{
		{"POST", "/pubsub/migration-events", 401},
		{"POST", "/pubsub/snapshot-cleanup", 401},
		{"POST", "/scheduler/sweep", 401},
		{"GET", "/health", 200},
		{"GET", "/ready", 200},
		{"GET", "/status", 200},
	}
	for _, tc := range tests {
		if code, body := s.do(t, tc.method, tc.path, `{}`); code != tc.want {
			t.Errorf("%s %s without a token: status %d (%s), want %d", tc.method, tc.path, code, body, tc.want)
		}
	}
}
