package lifecycle_test

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/snapsweep/snapsweep/events"
)

// advClock is the one clock every part of a run reads: snapsweep's
// components, the Compute fake and the oracle.
type advClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *advClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *advClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// advMessage is one cleanup message in the adversary's queue.
type advMessage struct {
	m         events.CleanupMessage
	notBefore time.Time
}

// advQueue is the cleanup topic: a queue the adversary delivers from in
// any order, duplicated and delayed. It can refuse a publish, as Pub/Sub
// sometimes does.
type advQueue struct {
	mu       sync.Mutex
	msgs     []advMessage
	failRate float64
	rnd      func() float64
	clock    *advClock
	total    int
}

func (q *advQueue) Publish(_ context.Context, m events.CleanupMessage) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failRate > 0 && q.rnd() < q.failRate {
		return errPublish
	}
	q.total++
	q.msgs = append(q.msgs, advMessage{m: m, notBefore: q.clock.Now()})
	return nil
}

type publishError struct{}

func (publishError) Error() string { return "adversary: publish refused" }

var errPublish = publishError{}

func (q *advQueue) push(m advMessage) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.msgs = append(q.msgs, m)
}

func (q *advQueue) len() int { q.mu.Lock(); defer q.mu.Unlock(); return len(q.msgs) }

// take removes up to n due messages, chosen by pick (an index below its
// argument).
func (q *advQueue) take(n int, now time.Time, pick func(int) int) []advMessage {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []advMessage
	for len(out) < n {
		var due []int
		for i, m := range q.msgs {
			if !m.notBefore.After(now) {
				due = append(due, i)
			}
		}
		if len(due) == 0 {
			break
		}
		i := due[pick(len(due))]
		out = append(out, q.msgs[i])
		q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
	}
	return out
}

// snapshotPath splits /compute/v1/projects/P/global/snapshots/N.
func snapshotPath(p string) (project, name string, ok bool) {
	parts := strings.Split(strings.TrimPrefix(p, "/compute/v1/"), "/")
	if len(parts) != 5 || parts[0] != "projects" || parts[2] != "global" || parts[3] != "snapshots" {
		return "", "", false
	}
	return parts[1], parts[4], true
}
