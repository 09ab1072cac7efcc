package cleanup_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// TestQuotaPauseIsPerProject runs in a synctest bubble (fake time, the real
// Compute client against gcefake in-process). Project A spends its delete
// quota of 2 a minute at 00:00:30 and its other deliveries wait inside their
// requests for the refill at 00:01:00; meanwhile every delivery of project B
// is deleted at once, in the same minute: a quota pause in one project does
// not delay another, and A's waiting deliveries hold none of the two call
// slots. A's remaining snapshots go after the refill.
func TestQuotaPauseIsPerProject(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, gcefake.Options{}, func(c *cleanup.EngineConfig) {
			c.Now = time.Now
			c.Concurrency = 2
			c.BreakerMinRequests = 1 << 30
		})
		if err := f.fake.SetQuota("proj-a", gcefake.GroupWrites, 2); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second) // 00:00:30 in the bubble
		refill := time.Now().Truncate(time.Minute).Add(time.Minute)
		own := map[string]string{label: "s1"}
		var a, b []events.CleanupMessage
		for i := range 4 {
			a = append(a, f.register(t, "proj-a", fmt.Sprintf("a-%d", i), "s1", store.TaskSucceeded, store.CleanupPending, own))
		}
		for i := range 10 {
			b = append(b, f.register(t, "proj-b", fmt.Sprintf("b-%d", i), "s1", store.TaskSucceeded, store.CleanupPending, own))
		}

		handleAll := func(msgs []events.CleanupMessage) *sync.WaitGroup {
			var wg sync.WaitGroup
			for _, m := range msgs {
				wg.Go(func() {
					out, err := f.engine.Handle(context.Background(), m)
					if err != nil || out.Result != cleanup.ResultDeleted {
						t.Errorf("%s/%s: %v %v, want deleted", m.Project, m.Name, out, err)
					}
				})
			}
			return &wg
		}
		waitA := handleAll(a)
		// A second of fake time: A's quota is spent, its deliveries wait for
		// the refill.
		time.Sleep(time.Second)
		synctest.Wait()
		if got := f.fake.Stats().QuotaErrorsByProject["proj-a"]; got == 0 {
			t.Fatal("project A's quota refused no call: the test did not test a pause")
		}
		handleAll(b).Wait()
		if now := time.Now(); now.After(refill) || now.Equal(refill) {
			t.Errorf("project B finished at %s, not before project A's refill at %s", now.Format(time.TimeOnly), refill.Format(time.TimeOnly))
		}
		waitA.Wait()

		// When each project's deletes went out, by the fake's clock.
		type minuteCount struct {
			Project string
			Before  int // deletes accepted before A's refill
			After   int
		}
		counts := map[string]*minuteCount{"proj-a": {Project: "proj-a"}, "proj-b": {Project: "proj-b"}}
		for _, c := range f.fake.Calls() {
			if c.Method != "snapshots.delete" || c.Status != 200 {
				continue
			}
			if c.Time.Before(refill) {
				counts[c.Project].Before++
			} else {
				counts[c.Project].After++
			}
		}
		want := []minuteCount{{"proj-a", 2, 2}, {"proj-b", 10, 0}}
		got := []minuteCount{*counts["proj-a"], *counts["proj-b"]}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("deletes accepted before and after A's refill (-want +got):\n%s", diff)
		}
		if got := f.fake.Stats().QuotaErrorsByProject["proj-b"]; got != 0 {
			t.Errorf("project B got %d quota errors, want 0", got)
		}
	})
}

// TestDeleteRateIsPerProject runs in a synctest bubble: project A is paced
// at one delete a second (RateByProject), project B at the default rate of
// 100 a second. Ten deletions in each, delivered at once: B's are all
// done within its own pace (a tenth of a second), while A's take their
// ten seconds — B never queues behind A's limiter.
func TestDeleteRateIsPerProject(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, gcefake.Options{}, func(c *cleanup.EngineConfig) {
			c.Now = time.Now
			c.Rate = 100
			c.RateByProject = map[string]float64{"proj-a": 1}
			c.BreakerMinRequests = 1 << 30
		})
		own := map[string]string{label: "s1"}
		start := time.Now()
		var mu sync.Mutex
		done := map[string]time.Duration{} // the last deletion of each project, after the start
		var wg sync.WaitGroup
		for _, p := range []string{"proj-a", "proj-b"} {
			for i := range 10 {
				m := f.register(t, p, fmt.Sprintf("%s-%d", p, i), "s1", store.TaskSucceeded, store.CleanupPending, own)
				wg.Go(func() {
					out, err := f.engine.Handle(context.Background(), m)
					if err != nil || out.Result != cleanup.ResultDeleted {
						t.Errorf("%s/%s: %v %v, want deleted", m.Project, m.Name, out, err)
					}
					mu.Lock()
					done[m.Project] = max(done[m.Project], time.Since(start))
					mu.Unlock()
				})
			}
		}
		wg.Wait()
		// Whole seconds of the fake clock: A's ten tokens span nine
		// seconds; B's ten fit in its first second.
		got := map[string]int{"proj-a": int(done["proj-a"] / time.Second), "proj-b": int(done["proj-b"] / time.Second)}
		if diff := cmp.Diff(map[string]int{"proj-a": 9, "proj-b": 0}, got); diff != "" {
			t.Errorf("whole seconds until each project's last deletion (-want +got):\n%s", diff)
		}
	})
}

// slowAnswers delays every answer by d after the fake has handled (and
// counted) the call: the network time back to the caller.
type slowAnswers struct {
	inner http.RoundTripper
	d     time.Duration
}

func (s slowAnswers) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.inner.RoundTrip(r)
	time.Sleep(s.d)
	return resp, err
}

// TestAQuotaAnswerAfterTheMinuteIsAboutThatMinute runs in a synctest
// bubble. Project A's quota of 2 deletes a minute is spent; a third delete
// goes out at 00:00:59.8, is counted and refused in that minute, and its
// answer arrives at 00:01:00.1, after the refill. The refusal is about the
// minute the call was sent in: the engine must not pause the project until
// 00:02:00 (a whole minute lost, which the pacing benchmark showed for one
// of three projects), but retry in the fresh minute and delete it.
func TestAQuotaAnswerAfterTheMinuteIsAboutThatMinute(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const latency = 300 * time.Millisecond
		fake := gcefake.New(gcefake.Options{})
		client, err := gce.New(context.Background(), gce.Config{Endpoint: "http://compute.test"},
			option.WithHTTPClient(&http.Client{Transport: slowAnswers{gcefake.InProcess(fake), latency}}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { client.Close() })
		f := &fixture{fake: fake, store: store.NewMemory()}
		f.engine = cleanup.NewEngine(cleanup.EngineConfig{
			Store: f.store, Compute: client, SessionLabel: label,
			Policy: lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{"proj-a"})},
			Rate:   1000, Concurrency: 4, OpWait: 5 * time.Second, Owner: "test", Now: time.Now, BreakerMinRequests: 1 << 30,
		})
		if err := fake.SetQuota("proj-a", gcefake.GroupWrites, 2); err != nil {
			t.Fatal(err)
		}
		own := map[string]string{label: "s1"}
		var msgs []events.CleanupMessage
		for i := range 3 {
			msgs = append(msgs, f.register(t, "proj-a", fmt.Sprintf("a-%d", i), "s1", store.TaskSucceeded, store.CleanupPending, own))
		}
		time.Sleep(30 * time.Second) // 00:00:30 in the bubble
		for _, m := range msgs[:2] {
			if out, err := f.engine.Handle(context.Background(), m); err != nil || out.Result != cleanup.ResultDeleted {
				t.Fatalf("%s: %v %v, want deleted (the minute's quota)", m.Name, out, err)
			}
		}
		// The third: its read goes out at 00:00:59.5 and its DELETE, right
		// after the read's answer, at 00:00:59.8.
		minute := time.Now().Truncate(time.Minute).Add(time.Minute)
		time.Sleep(time.Until(minute.Add(-500 * time.Millisecond)))
		out, err := f.engine.Handle(context.Background(), msgs[2])
		if err != nil || out.Result != cleanup.ResultDeleted {
			t.Errorf("%s: %v %v, want deleted after the refill at %s", msgs[2].Name, out, err, minute.Format(time.TimeOnly))
		}
		if now := time.Now(); !now.Before(minute.Add(10 * time.Second)) {
			t.Errorf("the third deletion ended at %s, want within seconds of the refill at %s", now.Format(time.TimeOnly), minute.Format(time.TimeOnly))
		}
		var refused []time.Time
		for _, c := range fake.Calls() {
			if c.Method == "snapshots.delete" && c.Status == http.StatusForbidden {
				refused = append(refused, c.Time)
			}
		}
		if len(refused) != 1 || !refused[0].Before(minute) {
			t.Errorf("delete calls refused by the quota at %v, want one, before %s (else the test did not test a late answer)", refused, minute.Format(time.TimeOnly))
		}
	})
}
