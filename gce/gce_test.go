package gce_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/gce/gcefake"
)

const project = "proj-a"

// clock is a settable clock for the fake, so operation latency and the quota window are
// driven by the test instead of by sleeping.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 3, 4, 5, 6, 7, 890_000_000, time.UTC)}
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

// setup starts a fake Compute API and a real client pointed at it.
func setup(t *testing.T, opts gcefake.Options) (*gce.Client, *gcefake.Fake) {
	t.Helper()
	fake := gcefake.New(opts)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	return newClient(t, srv.URL, option.WithHTTPClient(srv.Client())), fake
}

func newClient(t *testing.T, endpoint string, opts ...option.ClientOption) *gce.Client {
	t.Helper()
	c, err := gce.New(context.Background(), gce.Config{Endpoint: endpoint}, opts...)
	if err != nil {
		t.Fatalf("gce.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGet(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c, fake := setup(t, gcefake.Options{Now: clk.Now})
	id := fake.AddSnapshot(project, "snap-1", map[string]string{"migration-session": "s1", "team": "x"})

	got, err := c.Get(t.Context(), project, "snap-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	want := gce.Snapshot{
		Project:      project,
		Name:         "snap-1",
		Labels:       map[string]string{"migration-session": "s1", "team": "x"},
		Status:       "READY",
		CreationTime: clk.Now(),
		SourceDisk:   "https://www.googleapis.com/compute/v1/projects/proj-a/zones/us-central1-a/disks/disk-snap-1",
		ID:           strconv.FormatUint(id, 10),
		// Fresh: its size is still being computed (a partial figure).
		StorageBytes:       gcefake.DefaultSize(id).StorageBytes / 2,
		StorageBytesStatus: "UPDATING",
		DiskSizeGb:         gcefake.DefaultSize(id).DiskSizeGb,
		StorageLocations:   gcefake.DefaultSize(id).Locations,
		SnapshotType:       gcefake.DefaultSize(id).SnapshotType,
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(time.Time.Equal)); diff != "" {
		t.Errorf("Get (-want +got):\n%s", diff)
	}
	// A name reused after a deletion is another snapshot: another id.
	again := fake.AddSnapshot(project, "snap-1", map[string]string{"migration-session": "s1"})
	if reused, err := c.Get(t.Context(), project, "snap-1"); err != nil || reused.ID == got.ID || reused.ID != strconv.FormatUint(again, 10) {
		t.Errorf("Get of a reused name: id %q (err %v), want %d (not the old %s)", reused.ID, err, again, got.ID)
	}

	_, err = c.Get(t.Context(), project, "snap-missing")
	if got, want := gce.Classify(err), gce.ClassNotFound; got != want {
		t.Errorf("Get missing: class %q, want %q (err %v)", got, want, err)
	}
}

// TestGetSizes reads the storage fields Compute reports: the final size once
// it is no longer UPDATING, an archive snapshot, its locations and chain.
func TestGetSizes(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c, fake := setup(t, gcefake.Options{Now: clk.Now})
	fake.AddSnapshot(project, "snap-1", map[string]string{"migration-session": "s1"})
	fake.SetSize(project, "snap-1", gcefake.Size{StorageBytes: 3<<30 + 5, DiskSizeGb: 100,
		Locations: []string{"europe-west1"}, SnapshotType: "ARCHIVE", ChainName: "db-chain"})
	if got, err := c.Get(t.Context(), project, "snap-1"); err != nil || got.StorageBytesStatus != "UPDATING" || got.StorageBytes >= 3<<30 {
		t.Errorf("fresh snapshot: status %q, %d bytes (err %v); want UPDATING and a partial size", got.StorageBytesStatus, got.StorageBytes, err)
	}
	clk.Advance(2 * time.Minute)
	got, err := c.Get(t.Context(), project, "snap-1")
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	want := [6]any{int64(3<<30 + 5), "UP_TO_DATE", int64(100), []string{"europe-west1"}, "ARCHIVE", "db-chain"}
	if diff := cmp.Diff(want, [6]any{got.StorageBytes, got.StorageBytesStatus, got.DiskSizeGb, got.StorageLocations, got.SnapshotType, got.ChainName}); diff != "" {
		t.Errorf("sizes (-want +got):\n%s", diff)
	}
}

func TestListByLabel(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{})
	// More than two pages of 500, plus snapshots that must not be listed.
	var want []string
	for i := range 1100 {
		name := fmt.Sprintf("owned-%04d", i)
		fake.AddSnapshot(project, name, map[string]string{"migration-session": "s" + fmt.Sprint(i%7)})
		want = append(want, name)
	}
	for i := range 30 {
		fake.AddSnapshot(project, fmt.Sprintf("other-%02d", i), map[string]string{"team": "x"})
		fake.AddSnapshot("proj-b", fmt.Sprintf("owned-%04d", i), map[string]string{"migration-session": "s1"})
	}

	var got []string
	err := c.ListByLabel(t.Context(), project, "migration-session", func(s gce.Snapshot) error {
		if s.Project != project || s.Labels["migration-session"] == "" {
			t.Errorf("listed %+v", s)
		}
		got = append(got, s.Name)
		return nil
	})
	if err != nil {
		t.Fatalf("ListByLabel: %v", err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("listed names (-want +got):\n%s", diff)
	}
	if got, want := fake.Stats().ByMethod["snapshots.list"], 3; got != want {
		t.Errorf("list calls = %d, want %d (pages of 500)", got, want)
	}
}

func TestListByLabelStops(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{})
	for i := range 5 {
		fake.AddSnapshot(project, fmt.Sprintf("s-%d", i), map[string]string{"k": "v"})
	}
	stop := errors.New("stop")
	n := 0
	err := c.ListByLabel(t.Context(), project, "k", func(gce.Snapshot) error {
		n++
		if n == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 2 {
		t.Errorf("ListByLabel = %v after %d snapshots, want the callback's error after 2", err, n)
	}

	err = c.ListByLabel(t.Context(), project, `k:* OR name`, func(gce.Snapshot) error { return nil })
	if got, want := gce.Classify(err), gce.ClassPermanent; got != want {
		t.Errorf("invalid label key: class %q, want %q (err %v)", got, want, err)
	}
}

func TestDeleteAndWait(t *testing.T) {
	t.Parallel()
	clk := newClock()
	c, fake := setup(t, gcefake.Options{Now: clk.Now, Latency: 30 * time.Second})
	fake.AddSnapshot(project, "snap-1", nil)
	ctx := t.Context()

	id := gce.RequestID(project, "snap-1", "", 1)
	op, err := c.Delete(ctx, project, "snap-1", id)
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if s, _ := fake.Snapshot(project, "snap-1"); s.Status != "DELETING" {
		t.Errorf("status while the operation runs = %q, want DELETING", s.Status)
	}
	if done, err := c.WaitOperation(ctx, project, op, 150*time.Millisecond); done || err != nil {
		t.Errorf("WaitOperation before the latency passed = %v, %v; want false, nil", done, err)
	}

	// A retry of the same attempt (say, after a timeout) gets the same operation.
	op2, err := c.Delete(ctx, project, "snap-1", id)
	if err != nil || op2 != op {
		t.Errorf("repeated Delete = %q, %v; want %q, nil", op2, err, op)
	}

	clk.Advance(30 * time.Second)
	if done, err := c.WaitOperation(ctx, project, op, 5*time.Second); !done || err != nil {
		t.Fatalf("WaitOperation = %v, %v; want true, nil", done, err)
	}
	if fake.Exists(project, "snap-1") {
		t.Error("snapshot still exists after the delete finished")
	}

	// Even after the snapshot is gone, the same request id answers with the finished
	// operation rather than a 404.
	if op3, err := c.Delete(ctx, project, "snap-1", id); err != nil || op3 != op {
		t.Errorf("Delete after done with the same id = %q, %v; want %q, nil", op3, err, op)
	}
	// A new attempt generation finds nothing to delete.
	_, err = c.Delete(ctx, project, "snap-1", gce.RequestID(project, "snap-1", "", 2))
	if got, want := gce.Classify(err), gce.ClassNotFound; got != want {
		t.Errorf("Delete of a deleted snapshot: class %q, want %q (err %v)", got, want, err)
	}
	if got := fake.SuccessfulDeletes(project, "snap-1"); got != 1 {
		t.Errorf("SuccessfulDeletes = %d, want 1", got)
	}
	if got := fake.DeleteCalls(project, "snap-1"); got != 4 {
		t.Errorf("DeleteCalls = %d, want 4", got)
	}
}

func TestDeleteMissing(t *testing.T) {
	t.Parallel()
	c, _ := setup(t, gcefake.Options{})
	_, err := c.Delete(t.Context(), project, "nope", gce.RequestID(project, "nope", "", 1))

	var gerr *gce.Error
	if !errors.As(err, &gerr) {
		t.Fatalf("Delete error %v (%T) is not a *gce.Error", err, err)
	}
	want := gce.Error{Class: gce.ClassNotFound, Op: "delete snapshot", Project: project, Name: "nope"}
	got := *gerr
	got.Err = nil
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestWaitTimeout(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{Latency: time.Hour})
	fake.AddSnapshot(project, "slow", nil)
	op, err := c.Delete(t.Context(), project, "slow", gce.RequestID(project, "slow", "", 1))
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}

	done, err := c.WaitOperation(t.Context(), project, op, 200*time.Millisecond)
	if done || err != nil {
		t.Errorf("WaitOperation = %v, %v; want false, nil", done, err)
	}

	// The caller's own context ending is an error, not "not done yet".
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	done, err = c.WaitOperation(ctx, project, op, time.Minute)
	if done || gce.Classify(err) != gce.ClassTransient || !errors.Is(err, context.Canceled) {
		t.Errorf("WaitOperation with a cancelled context = %v, %v; want false and a transient context.Canceled", done, err)
	}

	_, err = c.WaitOperation(t.Context(), project, "operation-unknown", time.Second)
	if got, want := gce.Classify(err), gce.ClassNotFound; got != want {
		t.Errorf("WaitOperation of an unknown operation: class %q, want %q (err %v)", got, want, err)
	}
}

func TestFaultClasses(t *testing.T) {
	t.Parallel()

	// Every case runs against a fake on its own test clock, passed to the call so that a
	// case can let operations finish.
	type call func(ctx context.Context, c *gce.Client, clk *clock) error
	get := func(ctx context.Context, c *gce.Client, _ *clock) error {
		_, err := c.Get(ctx, project, "snap")
		return err
	}
	del := func(ctx context.Context, c *gce.Client, _ *clock) error {
		_, err := c.Delete(ctx, project, "snap", gce.RequestID(project, "snap", "", 1))
		return err
	}
	list := func(ctx context.Context, c *gce.Client, _ *clock) error {
		return c.ListByLabel(ctx, project, "k", func(gce.Snapshot) error { return nil })
	}
	ping := func(ctx context.Context, c *gce.Client, _ *clock) error { return c.Ping(ctx, project) }
	// deleteAndWait lets the operation run for a minute, so that its failure is seen by
	// WaitOperation rather than in the delete's answer. Use it with Latency: time.Minute.
	deleteAndWait := func(ctx context.Context, c *gce.Client, clk *clock) error {
		op, err := c.Delete(ctx, project, "snap", gce.RequestID(project, "snap", "", 1))
		if err != nil {
			return fmt.Errorf("delete failed before the operation ran: %v", err)
		}
		clk.Advance(time.Minute)
		done, err := c.WaitOperation(ctx, project, op, 5*time.Second)
		if !done {
			return fmt.Errorf("operation not done (%w)", err)
		}
		return err
	}
	withTimeout := func(next call) call {
		return func(ctx context.Context, c *gce.Client, clk *clock) error {
			ctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			return next(ctx, c, clk)
		}
	}
	// deleteFirst starts a delete of name with another request id than the case's own.
	deleteFirst := func(t *testing.T, f *gcefake.Fake, name string) {
		t.Helper()
		srv := httptest.NewServer(f)
		defer srv.Close()
		c := newClient(t, srv.URL)
		if _, err := c.Delete(t.Context(), project, name, gce.RequestID(project, name, "", 99)); err != nil {
			t.Fatal(err)
		}
	}
	slow := gcefake.Options{Latency: time.Minute}

	cases := []struct {
		name  string
		opts  gcefake.Options
		setup func(t *testing.T, f *gcefake.Fake)
		call  call
		want  gce.Class
	}{
		{"get 503", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 503, "backendError") }, get, gce.ClassTransient},
		{"delete 500", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 500, "internalError") }, del, gce.ClassTransient},
		{"delete 403 rateLimitExceeded", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 403, "rateLimitExceeded") }, del, gce.ClassRateLimited},
		{"delete 403 userRateLimitExceeded", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 403, "userRateLimitExceeded") }, del, gce.ClassRateLimited},
		{"delete 403 quotaExceeded", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 403, "quotaExceeded") }, del, gce.ClassRateLimited},
		{"delete 403 concurrent operations", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) {
			f.FailNext(project, "snap", 1, 403, "CONCURRENT_OPERATIONS_QUOTA_EXCEEDED")
		}, del, gce.ClassRateLimited},
		{"delete 429", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 429, "") }, del, gce.ClassRateLimited},
		// The fake's rate quotas answer as Compute does (403 rateLimitExceeded), per group;
		// the case's clock stands still, so both calls fall in one quota minute.
		{"delete over quota", gcefake.Options{Quota: map[string]int{gcefake.GroupWrites: 1}}, func(t *testing.T, f *gcefake.Fake) {
			f.AddSnapshot(project, "other", nil)
			deleteFirst(t, f, "other")
		}, del, gce.ClassRateLimited},
		{"get over the reads quota", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) {
			if err := f.SetQuota(project, gcefake.GroupReads, 1); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(f)
			defer srv.Close()
			if _, err := newClient(t, srv.URL).Get(t.Context(), project, "snap"); err != nil {
				t.Fatal(err)
			}
		}, get, gce.ClassRateLimited},
		{"delete in use", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.InUse(project, "snap", 1) }, del, gce.ClassInUse},
		{"delete not ready", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 400, "resourceNotReady") }, del, gce.ClassInUse},
		{"delete while deleting", slow, func(t *testing.T, f *gcefake.Fake) { deleteFirst(t, f, "snap") }, del, gce.ClassInUse},
		{"get 403 forbidden", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 403, "forbidden") }, get, gce.ClassPermanent},
		{"delete 400 invalid", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 400, "invalid") }, del, gce.ClassPermanent},
		{"delete 409", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.FailNext(project, "snap", 1, 409, "conflict") }, del, gce.ClassPermanent},
		{"get outage", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.Outage(true) }, get, gce.ClassTransient},
		{"delete outage", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.Outage(true) }, del, gce.ClassTransient},
		{"list outage", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.Outage(true) }, list, gce.ClassTransient},
		{"ping outage", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.Outage(true) }, ping, gce.ClassTransient},
		{"get random 503", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) { f.SetFailureRate(503, "backendError", 1) }, get, gce.ClassTransient},
		{"operation in use with HTTP status", slow, func(t *testing.T, f *gcefake.Fake) {
			f.FailOperation(project, "snap", 400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", true)
		}, deleteAndWait, gce.ClassInUse},
		{"operation in use without HTTP status", slow, func(t *testing.T, f *gcefake.Fake) {
			f.FailOperation(project, "snap", 400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", false)
		}, deleteAndWait, gce.ClassInUse},
		{"operation rate limited without HTTP status", slow, func(t *testing.T, f *gcefake.Fake) {
			f.FailOperation(project, "snap", 403, "RATE_LIMIT_EXCEEDED", false)
		}, deleteAndWait, gce.ClassRateLimited},
		{"operation not found", slow, func(t *testing.T, f *gcefake.Fake) {
			f.FailOperation(project, "snap", 404, "RESOURCE_NOT_FOUND", true)
		}, deleteAndWait, gce.ClassNotFound},
		{"operation internal error without HTTP status", slow, func(t *testing.T, f *gcefake.Fake) {
			f.FailOperation(project, "snap", 500, "INTERNAL_ERROR", false)
		}, deleteAndWait, gce.ClassTransient},
		{"operation unknown error without HTTP status", slow, func(t *testing.T, f *gcefake.Fake) {
			f.FailOperation(project, "snap", 400, "SOMETHING_NEW", false)
		}, deleteAndWait, gce.ClassPermanent},
		{"operation failed in the delete's answer", gcefake.Options{}, func(t *testing.T, f *gcefake.Fake) {
			f.FailOperation(project, "snap", 400, "RESOURCE_IN_USE_BY_ANOTHER_RESOURCE", false)
		}, del, gce.ClassInUse},
		{"call deadline", gcefake.Options{CallLatency: 5 * time.Second}, func(*testing.T, *gcefake.Fake) {}, withTimeout(get), gce.ClassTransient},
		{"ping deadline", gcefake.Options{CallLatency: 5 * time.Second}, func(*testing.T, *gcefake.Fake) {}, withTimeout(ping), gce.ClassTransient},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			clk := newClock()
			opts := tc.opts
			opts.Now = clk.Now
			c, fake := setup(t, opts)
			fake.AddSnapshot(project, "snap", map[string]string{"k": "v"})
			tc.setup(t, fake)

			err := tc.call(t.Context(), c, clk)
			if got := gce.Classify(err); got != tc.want {
				t.Fatalf("class %q, want %q (err %v)", got, tc.want, err)
			}
			var gerr *gce.Error
			if !errors.As(err, &gerr) {
				t.Fatalf("error %v (%T) is not a *gce.Error", err, err)
			}
			if tc.want == gce.ClassRateLimited {
				now := time.Now()
				if ra := gerr.RetryAfter; !ra.After(now) || ra.Sub(now) > time.Minute || ra.Second() != 0 {
					t.Errorf("RetryAfter = %v, want the next whole minute after %v", ra, now)
				}
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close() // nothing listens there any more: connection refused

	c := newClient(t, srv.URL)
	_, err := c.Get(t.Context(), project, "snap")
	if got, want := gce.Classify(err), gce.ClassTransient; got != want {
		t.Errorf("Get from a closed port: class %q, want %q (err %v)", got, want, err)
	}
}

func TestDeleteRequestIDValidation(t *testing.T) {
	t.Parallel()
	c, fake := setup(t, gcefake.Options{})
	fake.AddSnapshot(project, "snap", nil)
	for _, id := range []string{"", "not-a-uuid", "00000000-0000-0000-0000-000000000000", "{" + gce.RequestID(project, "snap", "", 1) + "}"} {
		_, err := c.Delete(t.Context(), project, "snap", id)
		if got, want := gce.Classify(err), gce.ClassPermanent; got != want {
			t.Errorf("Delete with request id %q: class %q, want %q (err %v)", id, got, want, err)
		}
	}
	if n := fake.DeleteCalls(project, "snap"); n != 0 {
		t.Errorf("%d delete calls reached the API with invalid request ids", n)
	}
}

func TestPing(t *testing.T) {
	t.Parallel()
	fake := gcefake.New(gcefake.Options{})
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	// No WithHTTPClient: a plain-http endpoint must work without any credentials.
	c := newClient(t, srv.URL)
	if err := c.Ping(t.Context(), project); err != nil {
		t.Fatalf("Ping of an empty project: %v", err)
	}
	fake.AddSnapshot(project, "a", nil)
	fake.AddSnapshot(project, "b", nil)
	if err := c.Ping(t.Context(), project); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	uuidV5 := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	cases := []struct {
		project, name, id string
		attempt           int
	}{
		{"proj-a", "snap-1", "", 1},
		{"proj-a", "snap-1", "", 2},
		{"proj-a", "snap-2", "", 1},
		{"proj-b", "snap-1", "", 1},
		{"proj-a", "snap-1", "", 0},
		// The same name reused by another snapshot: another request id.
		{"proj-a", "snap-1", "4711", 1},
		{"proj-a", "snap-1", "4712", 1},
	}
	seen := map[string]int{}
	for i, tc := range cases {
		id := gce.RequestID(tc.project, tc.name, tc.id, tc.attempt)
		if !uuidV5.MatchString(id) {
			t.Errorf("RequestID%v = %q, not a UUIDv5", tc, id)
		}
		if again := gce.RequestID(tc.project, tc.name, tc.id, tc.attempt); again != id {
			t.Errorf("RequestID%v not deterministic: %q then %q", tc, id, again)
		}
		if j, dup := seen[id]; dup {
			t.Errorf("RequestID%v = RequestID%v = %q", tc, cases[j], id)
		}
		seen[id] = i
	}
}

func TestRetryAt(t *testing.T) {
	t.Parallel()
	cases := []struct{ now, want string }{
		{"2026-01-02T03:04:05.6Z", "2026-01-02T03:05:00Z"},
		{"2026-01-02T03:04:00Z", "2026-01-02T03:05:00Z"},
		{"2026-01-02T23:59:59.999Z", "2026-01-03T00:00:00Z"},
	}
	for _, tc := range cases {
		now, _ := time.Parse(time.RFC3339Nano, tc.now)
		want, _ := time.Parse(time.RFC3339Nano, tc.want)
		if got := gce.RetryAt(now); !got.Equal(want) {
			t.Errorf("RetryAt(%s) = %s, want %s", tc.now, got.Format(time.RFC3339Nano), tc.want)
		}
	}
}

func TestNoCredentials(t *testing.T) {
	t.Parallel()
	for endpoint, want := range map[string]bool{"http://127.0.0.1:8089": true, "": false, "https://compute.googleapis.com": false} {
		if got := gce.NoCredentials(endpoint); got != want {
			t.Errorf("NoCredentials(%q) = %v, want %v", endpoint, got, want)
		}
	}
}
