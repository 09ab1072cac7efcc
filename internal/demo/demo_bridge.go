package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/snapsweep/snapsweep/events"
)

// pushBridge plays Pub/Sub push for the demo: pstest is pull-only, so it
// pulls from a subscription and posts each message, wrapped in the push
// envelope, to the service's handler, several at a time as production push
// does. A 2xx acknowledges; anything else nacks after a growing delay (the
// subscription's retry backoff), so the message comes back later.
type pushBridge struct {
	h http.Handler

	inflight   atomic.Int64 // messages being posted or waiting to be nacked
	deliveries atomic.Int64
	nacks      atomic.Int64

	mu       sync.Mutex
	attempts map[string]int
	// applied is when an event was first applied (2xx), by eventKey.
	applied map[string]time.Time
}

func newPushBridge(h http.Handler) *pushBridge {
	return &pushBridge{h: h, attempts: map[string]int{}, applied: map[string]time.Time{}}
}

// pushEnvelope is the wrapped Pub/Sub push body.
type pushEnvelope struct {
	Message struct {
		Data        []byte            `json:"data"`
		Attributes  map[string]string `json:"attributes,omitempty"`
		MessageID   string            `json:"messageId"`
		PublishTime time.Time         `json:"publishTime"`
	} `json:"message"`
	Subscription    string `json:"subscription"`
	DeliveryAttempt int    `json:"deliveryAttempt"`
}

// serve pushes the messages of sub (full name subName) to path until ctx
// ends, with at most inFlight requests at once.
func (b *pushBridge) serve(ctx context.Context, client *pubsub.Client, subName, path string, inFlight int) error {
	sub := client.Subscriber(subName)
	sub.ReceiveSettings.MaxOutstandingMessages = inFlight
	sub.ReceiveSettings.NumGoroutines = 1
	return sub.Receive(ctx, func(ctx context.Context, m *pubsub.Message) {
		b.inflight.Add(1)
		defer b.inflight.Add(-1)
		b.deliveries.Add(1)
		b.mu.Lock()
		b.attempts[m.ID]++
		n := b.attempts[m.ID]
		b.mu.Unlock()

		var env pushEnvelope
		env.Message.Data, env.Message.Attributes = m.Data, m.Attributes
		env.Message.MessageID, env.Message.PublishTime = m.ID, m.PublishTime
		env.Subscription, env.DeliveryAttempt = subName, n
		body, _ := json.Marshal(env)
		req := httptest.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		b.h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusNoContent, http.StatusProcessing:
			if path == pathEvents {
				b.noteApplied(m.Data)
			}
			m.Ack()
			return
		}
		b.nacks.Add(1)
		delay := min(100*time.Millisecond<<min(n-1, 5), 2*time.Second)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		m.Nack()
	})
}

const (
	pathEvents  = "/pubsub/migration-events"
	pathCleanup = "/pubsub/snapshot-cleanup"
)

// eventKey names what an event reports, for latency accounting.
func eventKey(typ events.Type, session, taskOrSnapshot string) string {
	return string(typ) + "|" + session + "|" + taskOrSnapshot
}

// noteApplied records when an event was first applied.
func (b *pushBridge) noteApplied(data []byte) {
	ev, err := events.Decode(data)
	if err != nil {
		return // a rejected message
	}
	var k string
	switch ev.Type {
	case events.TaskCompleted:
		k = eventKey(ev.Type, ev.SessionID, ev.TaskID)
	case events.SnapshotCreated:
		k = eventKey(ev.Type, ev.SessionID, ev.Snapshot.Project+"/"+ev.Snapshot.Name)
	default:
		return
	}
	now := time.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.applied[k]; !ok {
		b.applied[k] = now
	}
}

// appliedAt returns when the event named by k was first applied.
func (b *pushBridge) appliedAt(k string) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t, ok := b.applied[k]
	return t, ok
}
