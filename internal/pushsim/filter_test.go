package pushsim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/internal/pushsim"
	"github.com/snapsweep/snapsweep/service/servicetest"
)

// TestAcceptActsAsASubscriptionFilter: the messages Accept refuses are
// acknowledged without a push, as Pub/Sub does with what a subscription's
// filter does not match; the others are pushed.
func TestAcceptActsAsASubscriptionFilter(t *testing.T) {
	t.Parallel()
	const project = "pushsim-test"
	_, client := servicetest.PubSub(t, project, "snapshot-cleanup")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	topic := "projects/" + project + "/topics/snapshot-cleanup"
	sub := "projects/" + project + "/subscriptions/alpha"
	if _, err := client.SubscriptionAdminClient.CreateSubscription(ctx, &pubsubpb.Subscription{Name: sub, Topic: topic, AckDeadlineSeconds: 60}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var pushed []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var env struct {
			Message struct {
				Data []byte `json:"data"`
			} `json:"message"`
		}
		if err := json.NewDecoder(r.Body).Decode(&env); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		pushed = append(pushed, string(env.Message.Data))
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	pub := client.Publisher(topic)
	for _, m := range []struct{ data, project string }{{"a-1", "alpha"}, {"b-1", "beta"}, {"a-2", "alpha"}, {"none", ""}, {"b-2", "beta"}} {
		attrs := map[string]string{}
		if m.project != "" {
			attrs["project"] = m.project
		}
		if _, err := pub.Publish(ctx, &pubsub.Message{Data: []byte(m.data), Attributes: attrs}).Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pub.Stop()

	p := pushsim.New(pushsim.Config{Name: "snapshot-cleanup", Path: "/pubsub/snapshot-cleanup", Subscription: sub,
		API: client.SubscriptionAdminClient, Targets: func() []pushsim.Target { return []pushsim.Target{{Name: "srv", URL: srv.URL}} },
		InFlight: 8, Deadline: time.Minute, MinBackoff: time.Second, MaxBackoff: 10 * time.Second,
		Accept: func(attrs map[string]string) bool { return attrs["project"] == "alpha" }})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { p.Run(runCtx); close(done) }()
	for p.Stats().Acked+p.Stats().Filtered < 5 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	<-done

	mu.Lock()
	got := slices.Sorted(slices.Values(pushed))
	mu.Unlock()
	if diff := cmp.Diff([]string{"a-1", "a-2"}, got); diff != "" {
		t.Errorf("pushed (-want +got):\n%s", diff)
	}
	if st := p.Stats(); st.Filtered != 3 || st.Acked != 2 || st.Deliveries != 2 {
		t.Errorf("stats: %d filtered, %d acked, %d deliveries; want 3, 2, 2", st.Filtered, st.Acked, st.Deliveries)
	}
}

func TestSum(t *testing.T) {
	t.Parallel()
	a := pushsim.Stats{Deliveries: 10, Acked: 8, Nacked: 2, ByStatus: map[int]int{204: 8, 503: 2}, Messages: 8, MaxAttempts: 3,
		MaxTimeToAckMs: 900, MinWindow: 1, MaxWindow: 64, Filtered: 5, Over10: 1}
	b := pushsim.Stats{Deliveries: 4, Acked: 4, ByStatus: map[int]int{204: 4}, TransportErrors: 1, AckErrors: 1, Messages: 4, MaxAttempts: 1,
		MaxTimeToAckMs: 2000, MinWindow: 3, MaxWindow: 7}
	want := pushsim.Stats{Deliveries: 14, Acked: 12, Nacked: 2, ByStatus: map[int]int{204: 12, 503: 2}, TransportErrors: 1, AckErrors: 1,
		Messages: 12, MaxAttempts: 3, MaxTimeToAckMs: 2000, MinWindow: 1, MaxWindow: 64, Filtered: 5, Over10: 1}
	if diff := cmp.Diff(want, pushsim.Sum(a, b)); diff != "" {
		t.Errorf("Sum (-want +got):\n%s", diff)
	}
}
