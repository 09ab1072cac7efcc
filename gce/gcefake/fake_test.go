package gcefake_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"
	"github.com/googleapis/gax-go/v2"
	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/gce/gcefake"
)

// These tests drive the fake with the official REST client directly, so they check the
// fake against what the client really sends and decodes, independent of package gce.

const project = "proj-a"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)} }

type clients struct {
	snapshots  *compute.SnapshotsClient
	operations *compute.GlobalOperationsClient
	url        string
}

func setup(t *testing.T, opts gcefake.Options) (clients, *gcefake.Fake) {
	t.Helper()
	fake := gcefake.New(opts)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	copts := []option.ClientOption{option.WithEndpoint(srv.URL), option.WithoutAuthentication(), option.WithHTTPClient(srv.Client())}
	ctx := context.Background()
	s, err := compute.NewSnapshotsRESTClient(ctx, copts...)
	if err != nil {
		t.Fatal(err)
	}
	o, err := compute.NewGlobalOperationsRESTClient(ctx, copts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); o.Close() })
	return clients{snapshots: s, operations: o, url: srv.URL}, fake
}

// noRetry keeps the library from retrying 503s, so that injected faults are seen.
var noRetry = gax.WithRetry(nil)

func httpCode(err error) int {
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		return ae.HTTPCode()
	}
	return 0
}

func del(ctx context.Context, c clients, name, requestID string) (*compute.Operation, error) {
	return c.snapshots.Delete(ctx, &computepb.DeleteSnapshotRequest{Project: project, Snapshot: name, RequestId: &requestID})
}

func TestGetWireFormat(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c, fake := setup(t, gcefake.Options{Now: clk.Now})
	fake.AddSnapshot(project, "snap-1", map[string]string{"migration-session": "s1"})

	s, err := c.snapshots.Get(t.Context(), &computepb.GetSnapshotRequest{Project: project, Snapshot: "snap-1"})
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	created, err := time.Parse(time.RFC3339, s.GetCreationTimestamp())
	if err != nil || !created.Equal(clk.Now()) {
		t.Errorf("creationTimestamp %q (%v), want %v", s.GetCreationTimestamp(), err, clk.Now())
	}
	if s.GetName() != "snap-1" || s.GetStatus() != "READY" || s.GetLabels()["migration-session"] != "s1" || s.GetId() == 0 || s.GetLabelFingerprint() == "" {
		t.Errorf("Get returned %v", s)
	}

	_, err = c.snapshots.Get(t.Context(), &computepb.GetSnapshotRequest{Project: project, Snapshot: "missing"})
	if got := httpCode(err); got != http.StatusNotFound {
		t.Errorf("Get missing: code %d, want 404 (err %v)", got, err)
	}
}

func TestListPagingAndFilter(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{})
	for i := range 7 {
		fake.AddSnapshot(project, fmt.Sprintf("s-%d", i), map[string]string{"k": fmt.Sprint(i % 2)})
	}
	fake.AddSnapshot(project, "unlabelled", nil)

	list := func(filter string) ([]string, error) {
		it := c.snapshots.List(t.Context(), &computepb.ListSnapshotsRequest{Project: project, Filter: &filter, MaxResults: new(uint32(2))}, noRetry)
		var names []string
		for {
			s, err := it.Next()
			if errors.Is(err, iterator.Done) {
				return names, nil
			}
			if err != nil {
				return names, err
			}
			names = append(names, s.GetName())
		}
	}
	cases := []struct {
		filter   string
		want     []string
		wantCode int
	}{
		{"", []string{"s-0", "s-1", "s-2", "s-3", "s-4", "s-5", "s-6", "unlabelled"}, 0},
		{"labels.k:*", []string{"s-0", "s-1", "s-2", "s-3", "s-4", "s-5", "s-6"}, 0},
		{`labels.k = "1"`, []string{"s-1", "s-3", "s-5"}, 0},
		{"labels.other:*", nil, 0},
		{"name = s-1", nil, http.StatusBadRequest},
	}
	for _, tc := range cases {
		got, err := list(tc.filter)
		if code := httpCode(err); code != tc.wantCode {
			t.Errorf("filter %q: code %d, want %d (err %v)", tc.filter, code, tc.wantCode, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("filter %q (-want +got):\n%s", tc.filter, diff)
		}
	}
	// 8 snapshots in pages of 2, then 7, 3, 0 (one empty page) and the failing filter.
	if got, want := fake.Stats().ByMethod["snapshots.list"], 4+4+2+1+1; got != want {
		t.Errorf("list calls = %d, want %d", got, want)
	}
}

func TestDeleteOperation(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c, fake := setup(t, gcefake.Options{Now: clk.Now, Latency: time.Minute})
	fake.AddSnapshot(project, "snap", nil)
	id := uuid.NewString()

	op, err := del(t.Context(), c, "snap", id)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if op.Done() || op.Name() == "" {
		t.Errorf("Delete answered done=%v name=%q, want a running operation", op.Done(), op.Name())
	}
	clk.Advance(time.Minute)
	got, err := c.operations.Get(t.Context(), &computepb.GetGlobalOperationRequest{Project: project, Operation: op.Name()})
	if err != nil {
		t.Fatalf("operations.Get: %v", err)
	}
	if got.GetStatus() != computepb.Operation_DONE || got.GetError() != nil || got.GetOperationType() != "delete" {
		t.Errorf("operation = %v, want DONE without error", got)
	}
	if fake.Exists(project, "snap") {
		t.Error("snapshot exists after its delete finished")
	}

	calls := fake.Calls()
	want := []gcefake.Call{
		{Method: "snapshots.delete", Project: project, Name: "snap", RequestID: id, Status: 200},
		{Method: "globalOperations.get", Project: project, Name: op.Name(), Status: 200},
	}
	if diff := cmp.Diff(want, calls, cmpopts.IgnoreFields(gcefake.Call{}, "Time")); diff != "" {
		t.Errorf("Calls (-want +got):\n%s", diff)
	}
}

func TestWaitEndpoint(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{Latency: 20 * time.Millisecond})
	fake.AddSnapshot(project, "snap", nil)
	op, err := del(t.Context(), c, "snap", uuid.NewString())
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	got, err := c.operations.Wait(t.Context(), &computepb.WaitGlobalOperationRequest{Project: project, Operation: op.Name()})
	if err != nil || got.GetStatus() != computepb.Operation_DONE {
		t.Errorf("operations.Wait = %v, %v; want DONE", got, err)
	}
}

// TestOperationErrorPitfall documents why package gce reads operations itself: the
// library's Operation.Wait reports success for an operation that failed without an
// httpErrorStatusCode.
func TestOperationErrorPitfall(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name           string
		withHTTPStatus bool
		wantWaitErr    bool
	}{
		{"with httpErrorStatusCode", true, true},
		{"without httpErrorStatusCode", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, fake := setup(t, gcefake.Options{})
			fake.AddSnapshot(project, "snap", nil)
			fake.FailOperation(project, "snap", 400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", tc.withHTTPStatus)

			op, err := del(t.Context(), c, "snap", uuid.NewString())
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err = op.Wait(ctx)
			if gotErr := err != nil; gotErr != tc.wantWaitErr {
				t.Errorf("Operation.Wait = %v, want error %v", err, tc.wantWaitErr)
			}
			if code := op.Proto().GetError().GetErrors()[0].GetCode(); code != "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE" {
				t.Errorf("operation error code %q", code)
			}
			if !fake.Exists(project, "snap") || fake.SuccessfulDeletes(project, "snap") != 0 {
				t.Error("a failed delete operation removed the snapshot")
			}
		})
	}
}

func TestRequestIDOnce(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{})
	fake.AddSnapshot(project, "snap", nil)
	id := uuid.NewString()
	first, err := del(t.Context(), c, "snap", id)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	again, err := del(t.Context(), c, "snap", id)
	if err != nil || again.Name() != first.Name() {
		t.Errorf("repeated Delete = %v, %v; want operation %q", again, err, first.Name())
	}
	_, err = del(t.Context(), c, "snap", uuid.NewString())
	if got := httpCode(err); got != http.StatusNotFound {
		t.Errorf("Delete with a new id after success: code %d, want 404", got)
	}
	_, err = del(t.Context(), c, "snap", "not-a-uuid")
	if got := httpCode(err); got != http.StatusBadRequest {
		t.Errorf("Delete with an invalid request id: code %d, want 400", got)
	}
	if got := fake.SuccessfulDeletes(project, "snap"); got != 1 {
		t.Errorf("SuccessfulDeletes = %d, want 1", got)
	}
}

// TestConcurrentDeletes: many clients deleting the same snapshots at once, with repeated and
// fresh request ids, delete each snapshot exactly once. Run with -race.
func TestConcurrentDeletes(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c, fake := setup(t, gcefake.Options{Now: clk.Now, Latency: time.Second})
	const snapshots, workers = 50, 16
	ids := make([][2]string, snapshots)
	for i := range snapshots {
		fake.AddSnapshot(project, fmt.Sprintf("snap-%02d", i), nil)
		ids[i] = [2]string{uuid.NewString(), uuid.NewString()}
	}

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range snapshots {
				// Expected answers: an operation, 404 once gone, 400 while DELETING.
				_, err := del(t.Context(), c, fmt.Sprintf("snap-%02d", i), ids[i][w%2])
				if code := httpCode(err); err != nil && code != 404 && code != 400 {
					t.Errorf("Delete: %v", err)
				}
			}
		})
	}
	wg.Wait()
	clk.Advance(time.Second) // let the operations finish

	for i := range snapshots {
		name := fmt.Sprintf("snap-%02d", i)
		if got := fake.SuccessfulDeletes(project, name); got != 1 {
			t.Errorf("%s: SuccessfulDeletes = %d, want 1", name, got)
		}
		if got := fake.DeleteCalls(project, name); got != workers {
			t.Errorf("%s: DeleteCalls = %d, want %d", name, got, workers)
		}
	}
	if st := fake.Stats(); st.Deleted != snapshots {
		t.Errorf("Stats.Deleted = %d, want %d", st.Deleted, snapshots)
	}
}

// TestQuotaMinuteWindows checks the quota the way Compute counts it: per project and per
// quota group, in synchronized wall-clock minutes — a project that reaches its limit at
// 10:00:15 gets more at 10:01:00, not a minute after its first call.
func TestQuotaMinuteWindows(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 4, 10, 0, 15, 0, time.UTC)}
	c, fake := setup(t, gcefake.Options{Now: clk.Now, Quota: map[string]int{gcefake.GroupWrites: 3}})
	for i := range 8 {
		fake.AddSnapshot(project, fmt.Sprintf("s-%d", i), nil)
		fake.AddSnapshot("proj-b", fmt.Sprintf("s-%d", i), nil)
	}
	n := 0
	delA := func() int {
		_, err := del(t.Context(), c, fmt.Sprintf("s-%d", n), uuid.NewString())
		if httpCode(err) == 0 {
			n++
		}
		return httpCode(err)
	}
	get := func(p, name string) int {
		_, err := c.snapshots.Get(t.Context(), &computepb.GetSnapshotRequest{Project: p, Snapshot: name}, noRetry)
		return httpCode(err)
	}
	var codes []int
	// at advances the clock by d and then makes the call.
	at := func(d time.Duration, call func() int) {
		clk.Advance(d)
		codes = append(codes, call())
	}
	at(0, delA)                                      // 10:00:15
	at(0, delA)                                      // 10:00:15
	at(20*time.Second, delA)                         // 10:00:35, the third of the minute
	at(0, delA)                                      // over the quota
	at(0, func() int { return get(project, "s-7") }) // reads are another group
	at(0, func() int {                               // another project has its own counters
		_, err := c.snapshots.Delete(t.Context(), &computepb.DeleteSnapshotRequest{Project: "proj-b", Snapshot: "s-0", RequestId: new(uuid.NewString())})
		return httpCode(err)
	})
	at(24*time.Second, delA) // 10:00:59: still the same minute
	at(time.Second, delA)    // 10:01:00: a new minute, 45 s after the limit was reached

	if diff := cmp.Diff([]int{0, 0, 0, 403, 0, 0, 403, 0}, codes); diff != "" {
		t.Errorf("answer codes (-want +got):\n%s", diff)
	}
	st := fake.Stats()
	if st.QuotaErrors != 2 {
		t.Errorf("Stats.QuotaErrors = %d, want 2", st.QuotaErrors)
	}
	if diff := cmp.Diff(map[string]map[string]int{project: {"2026-03-04T10:00Z": 2}}, st.QuotaErrorsByProjectMinute); diff != "" {
		t.Errorf("quota errors by project and minute (-want +got):\n%s", diff)
	}
}

// TestQuotaRunTime changes quotas while the fake runs: per project, per group, the default
// for every project, and back to unlimited.
func TestQuotaRunTime(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c, fake := setup(t, gcefake.Options{Now: clk.Now})
	for i := range 10 {
		fake.AddSnapshot(project, fmt.Sprintf("s-%d", i), nil)
		fake.AddSnapshot("proj-b", fmt.Sprintf("s-%d", i), nil)
	}
	ctx := t.Context()
	delIn := func(p string, i int) int {
		_, err := c.snapshots.Delete(ctx, &computepb.DeleteSnapshotRequest{Project: p, Snapshot: fmt.Sprintf("s-%d", i), RequestId: new(uuid.NewString())})
		return httpCode(err)
	}
	list := func(p string) int {
		it := c.snapshots.List(ctx, &computepb.ListSnapshotsRequest{Project: p}, noRetry)
		_, err := it.Next()
		if errors.Is(err, iterator.Done) {
			err = nil
		}
		return httpCode(err)
	}
	opRead := func(p string) int {
		_, err := c.operations.Get(ctx, &computepb.GetGlobalOperationRequest{Project: p, Operation: "operation-none"}, noRetry)
		return httpCode(err)
	}
	if err := fake.SetQuota("proj-b", gcefake.GroupWrites, 1); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetQuota(project, gcefake.GroupReads, 1); err != nil {
		t.Fatal(err)
	}
	if err := fake.SetQuota(project, gcefake.GroupOperationReads, 1); err != nil {
		t.Fatal(err)
	}
	got := map[string][]int{
		"a deletes (unlimited)":   {delIn(project, 0), delIn(project, 1), delIn(project, 2)},
		"b deletes (1/min)":       {delIn("proj-b", 0), delIn("proj-b", 1)},
		"a lists (reads 1/min)":   {list(project), list(project)},
		"b lists (unlimited)":     {list("proj-b"), list("proj-b")},
		"a operation reads 1/min": {opRead(project), opRead(project)},
	}
	// Every project at 2 deletes a minute: project b's own setting goes.
	if err := fake.SetQuota("", gcefake.GroupWrites, 2); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	got["a deletes (2/min)"] = []int{delIn(project, 3), delIn(project, 4), delIn(project, 5)}
	got["b deletes (2/min)"] = []int{delIn("proj-b", 1), delIn("proj-b", 2), delIn("proj-b", 3)}
	if err := fake.SetQuota("", gcefake.GroupWrites, 0); err != nil {
		t.Fatal(err)
	}
	got["a deletes (unlimited again)"] = []int{delIn(project, 5), delIn(project, 6)}

	want := map[string][]int{
		"a deletes (unlimited)":       {0, 0, 0},
		"b deletes (1/min)":           {0, 403},
		"a lists (reads 1/min)":       {0, 403},
		"b lists (unlimited)":         {0, 0},
		"a operation reads 1/min":     {404, 403},
		"a deletes (2/min)":           {0, 0, 403},
		"b deletes (2/min)":           {0, 0, 403},
		"a deletes (unlimited again)": {0, 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answer codes (-want +got):\n%s", diff)
	}
	if err := fake.SetQuota(project, "deletes", 1); err == nil || !strings.Contains(err.Error(), `"deletes"`) {
		t.Errorf("SetQuota with an unknown group: %v, want an error naming it", err)
	}
	if err := fake.SetQuota(project, gcefake.GroupWrites, -1); err == nil {
		t.Error("SetQuota with a negative quota: no error")
	}
}

func TestFaultInjection(t *testing.T) {
	t.Parallel()
	get := func(ctx context.Context, c clients) error {
		_, err := c.snapshots.Get(ctx, &computepb.GetSnapshotRequest{Project: project, Snapshot: "snap"}, noRetry)
		return err
	}
	cases := []struct {
		name  string
		setup func(f *gcefake.Fake)
		want  []int // HTTP codes of successive gets, 0 for success
	}{
		{"fail next two", func(f *gcefake.Fake) { f.FailNext(project, "snap", 2, 503, "backendError") }, []int{503, 503, 0}},
		{"other snapshot unaffected", func(f *gcefake.Fake) { f.FailNext(project, "other", 2, 503, "backendError") }, []int{0}},
		{"outage", func(f *gcefake.Fake) { f.Outage(true) }, []int{503, 503}},
		{"always failing", func(f *gcefake.Fake) { f.SetFailureRate(429, "", 1) }, []int{429, 429}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, fake := setup(t, gcefake.Options{})
			fake.AddSnapshot(project, "snap", nil)
			tc.setup(fake)
			var got []int
			for range tc.want {
				got = append(got, httpCode(get(t.Context(), c)))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("codes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFailureRateIsRepeatable(t *testing.T) {
	t.Parallel()
	failures := func() int {
		c, fake := setup(t, gcefake.Options{Seed: 42})
		fake.AddSnapshot(project, "snap", nil)
		fake.SetFailureRate(503, "backendError", 0.3)
		n := 0
		for range 200 {
			_, err := c.snapshots.Get(t.Context(), &computepb.GetSnapshotRequest{Project: project, Snapshot: "snap"}, noRetry)
			if httpCode(err) == 503 {
				n++
			}
		}
		return n
	}
	a, b := failures(), failures()
	if a != b || a < 30 || a > 90 {
		t.Errorf("failures with the same seed: %d and %d, want equal and near 60 of 200", a, b)
	}
}

func TestErrorBody(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{})
	fake.AddSnapshot(project, "snap", nil)
	fake.FailNext(project, "snap", 1, 403, "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED")

	resp, err := http.Get(c.url + "/compute/v1/projects/proj-a/global/snapshots/snap")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	want := `{"error":{"code":403,"message":"gcefake: injected failure",` +
		`"errors":[{"domain":"usageLimits","reason":"rateLimitExceeded","message":"gcefake: injected failure"}],` +
		`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"compute.googleapis.com","reason":"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED"}]}}`
	if diff := cmp.Diff(want, string(body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}

	resp, err = http.Post(c.url+"/compute/v1/projects/proj-a/global/snapshots/snap/setLabels", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unsupported request: status %d, want 400 (never 404, which means gone)", resp.StatusCode)
	}
}

func TestSeedAndInspect(t *testing.T) {
	t.Parallel()
	clk := newClock()
	fake := gcefake.New(gcefake.Options{Now: clk.Now})
	labels := map[string]string{"a": "1"}
	fake.AddSnapshot(project, "snap", labels)
	labels["a"] = "changed by the caller"
	if !fake.SetLabels(project, "snap", map[string]string{"b": "2"}) {
		t.Fatal("SetLabels of an existing snapshot reported false")
	}
	if fake.SetLabels(project, "missing", nil) {
		t.Error("SetLabels of a missing snapshot reported true")
	}
	got, ok := fake.Snapshot(project, "snap")
	want := gcefake.Snapshot{
		Project:      project,
		Name:         "snap",
		Labels:       map[string]string{"b": "2"},
		Status:       "READY",
		CreationTime: clk.Now(),
		SourceDisk:   "https://www.googleapis.com/compute/v1/projects/proj-a/zones/us-central1-a/disks/disk-snap",
		Size:         gcefake.DefaultSize(got.ID),
		ID:           got.ID,
	}
	if got.ID == 0 {
		t.Error("Snapshot has no id")
	}
	if diff := cmp.Diff(want, got); !ok || diff != "" {
		t.Errorf("Snapshot (-want +got):\n%s", diff)
	}
	if fake.Exists(project, "missing") {
		t.Error("Exists of a missing snapshot")
	}
}

// TestRealisticSizes checks what the fake reports about storage: sizes that
// differ from the disk's, some ARCHIVE snapshots, UPDATING while fresh.
func TestRealisticSizes(t *testing.T) {
	t.Parallel()
	archive, regional := 0, 0
	for id := uint64(1); id <= 20; id++ {
		sz := gcefake.DefaultSize(id)
		if sz.StorageBytes <= 0 || sz.StorageBytes >= sz.DiskSizeGb<<30 || sz.StorageBytes%(1<<30) == 0 {
			t.Errorf("id %d: %d bytes of a %d GB disk; want a share of the disk, not a whole number of GiB", id, sz.StorageBytes, sz.DiskSizeGb)
		}
		if sz.SnapshotType == "ARCHIVE" {
			archive++
		}
		if sz.Locations[0] != "us" {
			regional++
		}
	}
	if archive != 4 || regional != 10 {
		t.Errorf("%d ARCHIVE and %d regional of 20; want 4 and 10", archive, regional)
	}
}
