package demo

import (
	"context"
	"net/http"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/internal/pushsim"
)

// pushBridge plays Pub/Sub push for the demo with the push simulator
// (pstest is pull-only): a fixed window of requests in flight per
// subscription, posted to the service's handler in this process, nack and
// redelivery with a growing delay on anything but 2xx. It also notes when
// each event was first applied, for the latency figures.
type pushBridge struct {
	events, cleanups *pushsim.Pusher

	mu sync.Mutex
	// applied is when an event was first applied (2xx), by eventKey.
	applied map[string]time.Time
}

const (
	pathEvents  = "/pubsub/migration-events"
	pathCleanup = "/pubsub/snapshot-cleanup"
)

// newPushBridge pushes the messages of the two subscriptions (full names)
// to h.
func newPushBridge(h http.Handler, ps *pubsub.Client, eventsSub, cleanupSub string) *pushBridge {
	b := &pushBridge{applied: map[string]time.Time{}}
	client := &http.Client{Transport: gcefake.InProcess(h)} // posts to the service in this process
	target := func() []pushsim.Target { return []pushsim.Target{{Name: "demo", URL: "http://demo"}} }
	p := func(name, path, sub string, inFlight int, onAck func([]byte)) *pushsim.Pusher {
		return pushsim.New(pushsim.Config{Name: name, Path: path, Subscription: sub, API: ps.SubscriptionAdminClient,
			Targets: target, InFlight: inFlight, Fixed: true, Deadline: time.Minute,
			MinBackoff: 100 * time.Millisecond, MaxBackoff: 2 * time.Second, Client: client, OnAck: onAck})
	}
	b.events = p("migration-events", pathEvents, eventsSub, 16, b.noteApplied)
	b.cleanups = p("snapshot-cleanup", pathCleanup, cleanupSub, 32, nil)
	return b
}

// run pushes until ctx ends.
func (b *pushBridge) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { b.events.Run(ctx) })
	wg.Go(func() { b.cleanups.Run(ctx) })
	wg.Wait()
}

// pending counts the messages pulled and not acknowledged yet.
func (b *pushBridge) pending() int { return b.events.Pending() + b.cleanups.Pending() }

// deliveries and nacks count the pushes and the pushes not acknowledged.
func (b *pushBridge) deliveries() int64 {
	return int64(b.events.Stats().Deliveries + b.cleanups.Stats().Deliveries)
}
func (b *pushBridge) nacks() int64 { return int64(b.events.Stats().Nacked + b.cleanups.Stats().Nacked) }

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
