package chaos

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
)

// pusher plays Pub/Sub push for one subscription: it pulls messages and
// posts them, wrapped in the push envelope, to the serve instances
// round-robin. 2xx (and 102) acks; anything else, or no answer, nacks with
// a growing delay (the retry policy's backoff), so the message comes back
// later.
//
// Like Pub/Sub push, it adjusts the number of pushes in flight (the push
// window) to the success rate: the window starts small, grows by one with
// every success up to the maximum and halves with every failure (at least
// one). With fixed set, the window stays at the maximum whatever happens.
type pusher struct {
	name     string // topic, for the log
	path     string // /pubsub/...
	sub      string // full subscription name
	api      *pubsubapi.SubscriptionAdminClient
	targets  func() []*instance
	inflight int           // the largest window
	fixed    bool          // window always inflight
	deadline time.Duration // ack deadline = HTTP timeout of one push
	minBack  time.Duration
	maxBack  time.Duration
	client   *http.Client

	rr        atomic.Uint64
	active    atomic.Int64
	lastPull  atomic.Int64 // unix nanos of the last pull that returned messages
	lastEmpty atomic.Int64 // unix nanos of the last pull that returned nothing
	finished  chan struct{}

	mu          sync.Mutex
	window      float64
	outstanding map[string]bool // message id -> pulled, not acked yet
	attempts    map[string]int  // message id -> deliveries
	firstSeen   map[string]time.Time
	acked       map[string]bool
	toTarget    map[string]int // instance name -> requests in flight
	st          pushStats
}

type pushStats struct {
	Deliveries      int         `json:"deliveries"`
	Acked           int         `json:"acked"`
	Nacked          int         `json:"nacked"`
	ByStatus        map[int]int `json:"byStatus"`
	TransportErrors int         `json:"transportErrors"`
	AckErrors       int         `json:"ackErrors"`
	Messages        int         `json:"messages"`
	MaxAttempts     int         `json:"maxAttempts"`
	MaxTimeToAckMs  int64       `json:"maxTimeToAckMs"`
	MinWindow       int         `json:"minWindow"`
	MaxWindow       int         `json:"maxWindow"`
	// Over10 counts messages delivered more than 10 times (production
	// dead-letters after max_delivery_attempts, 10 by default, though with
	// its 10 s minimum backoff a message gets fewer attempts per minute).
	Over10 int `json:"over10"`
}

// initialWindow is the push window at start ("a small single-digit window").
const initialWindow = 3

func newPusher(name, path, sub string, api *pubsubapi.SubscriptionAdminClient, targets func() []*instance,
	inflight int, fixed bool, deadline, minBack, maxBack time.Duration) *pusher {
	p := &pusher{name: name, path: path, sub: sub, api: api, targets: targets, inflight: inflight, fixed: fixed,
		deadline: deadline, minBack: minBack, maxBack: maxBack, finished: make(chan struct{}, 1),
		client:      &http.Client{Timeout: deadline - 2*time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: inflight}},
		outstanding: map[string]bool{}, attempts: map[string]int{}, firstSeen: map[string]time.Time{},
		acked: map[string]bool{}, toTarget: map[string]int{}, st: pushStats{ByStatus: map[int]int{}}}
	p.window = float64(min(initialWindow, inflight))
	if fixed {
		p.window = float64(inflight)
	}
	p.st.MinWindow, p.st.MaxWindow = int(p.window), int(p.window)
	return p
}

// adjust moves the push window after a push that succeeded or not.
func (p *pusher) adjust(ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fixed {
		return
	}
	if ok {
		p.window = min(p.window+1, float64(p.inflight))
	} else {
		p.window = max(p.window/2, 1)
	}
	p.st.MinWindow = min(p.st.MinWindow, int(p.window))
	p.st.MaxWindow = max(p.st.MaxWindow, int(p.window))
}

func (p *pusher) free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.window) - int(p.active.Load())
}

// run pulls and pushes until ctx ends, then waits for the requests in flight.
func (p *pusher) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for ctx.Err() == nil {
		n := p.free()
		if n <= 0 {
			select {
			case <-p.finished:
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		resp, err := p.api.Pull(pctx, &pubsubpb.PullRequest{Subscription: p.sub, MaxMessages: int32(n)})
		cancel()
		var msgs []*pubsubpb.ReceivedMessage
		if err == nil {
			msgs = resp.GetReceivedMessages()
		}
		if len(msgs) == 0 {
			p.lastEmpty.Store(time.Now().UnixNano())
			if err != nil && ctx.Err() == nil {
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		p.lastPull.Store(time.Now().UnixNano())
		for _, m := range msgs {
			p.active.Add(1)
			wg.Go(func() {
				defer func() {
					p.active.Add(-1)
					select {
					case p.finished <- struct{}{}:
					default:
					}
				}()
				p.deliver(ctx, m)
			})
		}
	}
}

// pick returns the next live instance, round-robin.
func (p *pusher) pick() *instance {
	all := p.targets()
	var live []*instance
	for _, in := range all {
		if in.isUp() {
			live = append(live, in)
		}
	}
	if len(live) == 0 {
		live = all
	}
	return live[int(p.rr.Add(1)-1)%len(live)]
}

func (p *pusher) deliver(ctx context.Context, rm *pubsubpb.ReceivedMessage) {
	m := rm.GetMessage()
	id := m.GetMessageId()
	now := time.Now()
	p.mu.Lock()
	p.outstanding[id] = true
	p.attempts[id]++
	attempt := p.attempts[id]
	if _, ok := p.firstSeen[id]; !ok {
		p.firstSeen[id] = now
		p.st.Messages++
	}
	p.st.Deliveries++
	in := p.pick()
	p.toTarget[in.name]++
	p.mu.Unlock()

	body, _ := json.Marshal(map[string]any{
		"message": map[string]any{
			"data":        base64.StdEncoding.EncodeToString(m.GetData()),
			"attributes":  m.GetAttributes(),
			"messageId":   id,
			"message_id":  id,
			"publishTime": m.GetPublishTime().AsTime().UTC().Format(time.RFC3339Nano),
		},
		"subscription": p.sub,
	})
	code, err := p.post(ctx, in.url()+p.path, body)

	p.mu.Lock()
	p.toTarget[in.name]--
	if err != nil {
		p.st.TransportErrors++
	} else {
		p.st.ByStatus[code]++
	}
	ok := err == nil && (code == 102 || code == 200 || code == 201 || code == 202 || code == 204)
	p.mu.Unlock()
	p.adjust(ok)

	if ok {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		aerr := p.api.Acknowledge(actx, &pubsubpb.AcknowledgeRequest{Subscription: p.sub, AckIds: []string{rm.GetAckId()}})
		cancel()
		p.mu.Lock()
		p.st.Acked++
		if aerr != nil {
			// Pub/Sub redelivers it if the ack was lost; the handler
			// answered 2xx, so it is done as far as the service goes.
			p.st.AckErrors++
		}
		delete(p.outstanding, id)
		if !p.acked[id] {
			p.acked[id] = true
			if d := time.Since(p.firstSeen[id]).Milliseconds(); d > p.st.MaxTimeToAckMs {
				p.st.MaxTimeToAckMs = d
			}
		}
		p.mu.Unlock()
		return
	}
	// Nack with the retry policy's backoff: exponential from minBack,
	// capped at maxBack, ±20 % jitter.
	back := p.minBack << min(attempt-1, 16)
	back = min(back, p.maxBack)
	back = time.Duration(float64(back) * (0.8 + 0.4*rand.Float64()))
	secs := int32(max(back.Round(time.Second)/time.Second, 1))
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_ = p.api.ModifyAckDeadline(mctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: p.sub, AckIds: []string{rm.GetAckId()}, AckDeadlineSeconds: secs})
	cancel()
	p.mu.Lock()
	p.st.Nacked++
	p.mu.Unlock()
}

func (p *pusher) post(ctx context.Context, url string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// inflightTo is how many pushes to the named instance are in flight.
func (p *pusher) inflightTo(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.toTarget[name]
}

// pending is the number of messages pulled but not acked (nacked ones
// waiting for redelivery included) plus the pushes in flight.
func (p *pusher) pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.outstanding) + int(p.active.Load())
}

// ackedCount is the number of distinct messages acked.
func (p *pusher) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// idleFor reports whether nothing is outstanding and every pull for at
// least d came back empty.
func (p *pusher) idleFor(d time.Duration) bool {
	if p.pending() > 0 {
		return false
	}
	last := time.Unix(0, p.lastPull.Load())
	empty := time.Unix(0, p.lastEmpty.Load())
	return time.Since(last) >= d && empty.After(last)
}

func (p *pusher) stats() pushStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.st
	st.ByStatus = map[int]int{}
	for k, v := range p.st.ByStatus {
		st.ByStatus[k] = v
	}
	for _, n := range p.attempts {
		st.MaxAttempts = max(st.MaxAttempts, n)
		if n > 10 {
			st.Over10++
		}
	}
	return st
}

func (s pushStats) String() string {
	codes := make([]int, 0, len(s.ByStatus))
	for c := range s.ByStatus {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var b bytes.Buffer
	for i, c := range codes {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%d×%d", c, s.ByStatus[c])
	}
	return fmt.Sprintf("%d messages, %d deliveries (%s; %d transport errors), %d acked, %d nacked, max %d deliveries of one message, longest %s to ack; push window %d–%d",
		s.Messages, s.Deliveries, b.String(), s.TransportErrors, s.Acked, s.Nacked, s.MaxAttempts,
		(time.Duration(s.MaxTimeToAckMs) * time.Millisecond).Round(100*time.Millisecond), s.MinWindow, s.MaxWindow)
}
