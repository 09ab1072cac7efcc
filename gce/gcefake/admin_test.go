package gcefake_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/gce/gcefake"
)

// adminSetup serves a fake through its admin handler and returns the real client on it.
func adminSetup(t *testing.T, opts gcefake.Options) (*compute.SnapshotsClient, *compute.GlobalOperationsClient, *gcefake.Fake, string) {
	t.Helper()
	fake := gcefake.New(opts)
	srv := httptest.NewServer(fake.AdminHandler())
	t.Cleanup(srv.Close)
	copts := []option.ClientOption{option.WithEndpoint(srv.URL), option.WithoutAuthentication(), option.WithHTTPClient(srv.Client())}
	s, err := compute.NewSnapshotsRESTClient(context.Background(), copts...)
	if err != nil {
		t.Fatal(err)
	}
	o, err := compute.NewGlobalOperationsRESTClient(context.Background(), copts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); o.Close() })
	return s, o, fake, srv.URL
}

// call makes one admin request and returns the status and the body.
func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminHandler(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	snaps, _, _, url := adminSetup(t, gcefake.Options{Now: clk.Now})

	for i := range 3 {
		if code, body := call(t, "POST", url+"/fake/snapshots", fmt.Sprintf(`{"project":"proj-a","name":"s-%d","labels":{"migration-session":"s1"}}`, i)); code != http.StatusCreated {
			t.Fatalf("create: %d %s", code, body)
		}
	}
	// Bad requests are refused with what was wrong.
	for _, tc := range []struct{ path, body, want string }{
		{"/fake/snapshots", `{"project":"proj-a"}`, "name"},
		{"/fake/faults", `{"failRate":2}`, "failRate must be within [0, 1], got 2"},
		{"/fake/faults", `{"failCode":200}`, "failCode must be an HTTP error status (400-599), got 200"},
		{"/fake/faults", `{"qouta":5}`, `unknown field "qouta"`},
		{"/fake/quota", `{"project":"proj-a","group":"deletes","perMinute":5}`, `unknown quota group "deletes"`},
		{"/fake/quota", `{"project":"proj-a","perMinute":-1}`, "must not be negative"},
	} {
		if code, body := call(t, "POST", url+tc.path, tc.body); code != http.StatusBadRequest || !strings.Contains(body, tc.want) {
			t.Errorf("POST %s %s: %d %q, want 400 naming %q", tc.path, tc.body, code, body, tc.want)
		}
	}
	// Defaults, then a run-time change: one delete a minute in every project.
	if code, body := call(t, "GET", url+"/fake/faults", ""); code != 200 || !jsonEqual(t, `{"failRate":0,"failCode":503,"failReason":"backendError","quota":0}`, body) {
		t.Errorf("GET /fake/faults = %d %s", code, body)
	}
	if code, body := call(t, "POST", url+"/fake/faults", `{"quota":1}`); code != 200 || !jsonEqual(t, `{"failRate":0,"failCode":503,"failReason":"backendError","quota":1}`, body) {
		t.Errorf("POST /fake/faults = %d %s", code, body)
	}
	if code, body := call(t, "POST", url+"/fake/quota", `{"project":"proj-a","group":"reads","perMinute":100}`); code != 200 ||
		!jsonEqual(t, `{"default":{"writes":1},"projects":{"proj-a":{"reads":100}}}`, body) {
		t.Errorf("POST /fake/quota = %d %s", code, body)
	}
	var codes []int
	for i := range 2 {
		_, err := snaps.Delete(t.Context(), &computepb.DeleteSnapshotRequest{Project: "proj-a", Snapshot: fmt.Sprintf("s-%d", i), RequestId: new(uuid.NewString())})
		codes = append(codes, httpCode(err))
	}
	if diff := cmp.Diff([]int{0, 403}, codes); diff != "" {
		t.Errorf("deletes at 1/min (-want +got):\n%s", diff)
	}

	var facts []gcefake.Facts
	_, body := call(t, "GET", url+"/fake/snapshots?project=proj-a", "")
	if err := json.Unmarshal([]byte(body), &facts); err != nil {
		t.Fatalf("GET /fake/snapshots: %v in %s", err, body)
	}
	want := []gcefake.Facts{
		{Name: "s-0", DeleteCalls: 1, SuccessfulDeletes: 1, DeletedAt: clk.Now()}, // Latency 0: at the call
		{Name: "s-1", Exists: true, Status: "READY", Labels: map[string]string{"migration-session": "s1"}, DeleteCalls: 1, QuotaRejected: 1},
		{Name: "s-2", Exists: true, Status: "READY", Labels: map[string]string{"migration-session": "s1"}},
	}
	if diff := cmp.Diff(want, facts); diff != "" {
		t.Errorf("GET /fake/snapshots (-want +got):\n%s", diff)
	}
	var st gcefake.Stats
	_, body = call(t, "GET", url+"/fake/calls", "")
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /fake/calls: %v in %s", err, body)
	}
	if st.QuotaErrors != 1 || st.QuotaErrorsByProject["proj-a"] != 1 || st.QuotaErrorsByProjectMinute["proj-a"]["2026-03-04T10:00Z"] != 1 || st.ByStatus[403] != 1 {
		t.Errorf("GET /fake/calls = %s, want one quota error of proj-a at 10:00", body)
	}
}

// TestSlowOperations: the snapshot goes at the operation latency, its operation reports
// RUNNING until the slow time has passed; set through the admin endpoint.
func TestSlowOperations(t *testing.T) {
	t.Parallel()
	clk := newClock()
	snaps, ops, fake, url := adminSetup(t, gcefake.Options{Now: clk.Now, Latency: time.Second})
	fake.AddSnapshot(project, "slow", nil)
	if code, body := call(t, "POST", url+"/fake/slowops", `{"project":"proj-a","name":"slow","seconds":40}`); code != http.StatusNoContent {
		t.Fatalf("POST /fake/slowops: %d %s", code, body)
	}
	op, err := snaps.Delete(t.Context(), &computepb.DeleteSnapshotRequest{Project: project, Snapshot: "slow", RequestId: new(uuid.NewString())})
	if err != nil {
		t.Fatal(err)
	}
	status := func() string {
		o, err := ops.Get(t.Context(), &computepb.GetGlobalOperationRequest{Project: project, Operation: op.Name()}, noRetry)
		if err != nil {
			t.Fatal(err)
		}
		return o.GetStatus().String()
	}
	var got []string
	for _, d := range []time.Duration{0, 2 * time.Second, 37 * time.Second, time.Second} {
		clk.Advance(d)
		got = append(got, fmt.Sprintf("%s exists=%t", status(), fake.Exists(project, "slow")))
	}
	want := []string{"RUNNING exists=true", "RUNNING exists=false", "RUNNING exists=false", "DONE exists=false"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("operation status and snapshot after 0, 2, 39, 40 s (-want +got):\n%s", diff)
	}
}

func jsonEqual(t *testing.T, want, got string) bool {
	t.Helper()
	var w, g any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(bytes.TrimSpace([]byte(got)), &g); err != nil {
		return false
	}
	return cmp.Equal(w, g)
}

// TestCallerPrefix: a client whose endpoint names its caller
// (http://HOST/caller/NAME) reaches the same API, its delete operation can
// be waited for through the same prefix, and its quota errors are counted
// under its name, apart from another caller's.
func TestCallerPrefix(t *testing.T) {
	t.Parallel()
	clk := newClock()
	fake := gcefake.New(gcefake.Options{Now: clk.Now})
	srv := httptest.NewServer(fake.AdminHandler())
	t.Cleanup(srv.Close)
	client := func(caller string) *compute.SnapshotsClient {
		s, err := compute.NewSnapshotsRESTClient(t.Context(), option.WithEndpoint(srv.URL+"/caller/"+caller),
			option.WithoutAuthentication(), option.WithHTTPClient(srv.Client()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	for i := range 3 {
		if code, body := call(t, "POST", srv.URL+"/fake/snapshots", fmt.Sprintf(`{"project":"proj-a","name":"s-%d"}`, i)); code != 201 {
			t.Fatalf("POST /fake/snapshots = %d %s", code, body)
		}
	}
	if code, body := call(t, "POST", srv.URL+"/fake/faults", `{"quota":1}`); code != 200 {
		t.Fatalf("POST /fake/faults = %d %s", code, body)
	}
	a, b := client("serve-0"), client("serve-1")
	op, err := a.Delete(t.Context(), &computepb.DeleteSnapshotRequest{Project: "proj-a", Snapshot: "s-0", RequestId: new(uuid.NewString())})
	if err != nil {
		t.Fatalf("delete through the prefix: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := op.Wait(ctx); err != nil {
		t.Fatalf("wait through the prefix: %v", err)
	}
	var codes []int
	for _, c := range []*compute.SnapshotsClient{a, b} {
		_, err := c.Delete(t.Context(), &computepb.DeleteSnapshotRequest{Project: "proj-a", Snapshot: "s-1", RequestId: new(uuid.NewString())})
		codes = append(codes, httpCode(err))
	}
	if diff := cmp.Diff([]int{403, 403}, codes); diff != "" {
		t.Errorf("deletes over the quota (-want +got):\n%s", diff)
	}
	want := map[string]map[string]map[string]int{
		"serve-0": {"proj-a": {"2026-03-04T05:06Z": 1}},
		"serve-1": {"proj-a": {"2026-03-04T05:06Z": 1}},
	}
	if diff := cmp.Diff(want, fake.Stats().QuotaErrorsByCaller); diff != "" {
		t.Errorf("quota errors by caller (-want +got):\n%s", diff)
	}
}
