// Package pushsim plays Pub/Sub push where nothing pushes: the Pub/Sub
// emulator pushes about two requests at a time and pstest not at all, so
// the demo, the chaos run and the benchmarks pull from a subscription and
// post each message, wrapped in the push envelope (handlers.PushEnvelope),
// to the service the way production push does: many requests in flight, a
// push window that follows the success rate, nack and redelivery with the
// retry policy's backoff on anything but 2xx.
//
// It owns only the delivery of messages; it never looks into them.
package pushsim

import (
	"bytes"
	"context"
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

	"github.com/snapsweep/snapsweep/handlers"
	"github.com/snapsweep/snapsweep/internal/wait"
)

// Pusher plays Pub/Sub push for one subscription: it pulls messages and
// posts them, wrapped in the push envelope, to its targets round-robin. 2xx (and 102) acks; anything else, or no answer, nacks with
// a growing delay (the retry policy's backoff), so the message comes back
// later.
//
// Like Pub/Sub push, it adjusts the number of pushes in flight (the push
// window) to the success rate: the window starts small, grows by one with
// every success up to the maximum and halves with every failure (at least
// one). With fixed set, the window stays at the maximum whatever happens.
type Pusher struct {
	name     string // topic, for the log
	path     string // /pubsub/...
	sub      string // full subscription name
	api      *pubsubapi.SubscriptionAdminClient
	targets  func() []Target
	inflight int           // the largest window
	fixed    bool          // window always inflight
	deadline time.Duration // ack deadline = HTTP timeout of one push
	minBack  time.Duration
	maxBack  time.Duration
	client   *http.Client
	onAck    func(data []byte)
	accept   func(attrs map[string]string) bool

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
	st          Stats
}

// Target is where pushes go: a service instance's base URL. Up, when set,
// says whether it is serving (pushes go to the live ones while any is).
type Target struct {
	Name string
	URL  string
	Up   func() bool
}

// Config configures a Pusher.
type Config struct {
	// Name is the topic (for logs), Path the endpoint (/pubsub/...),
	// Subscription the full subscription name.
	Name, Path, Subscription string
	API                      *pubsubapi.SubscriptionAdminClient
	Targets                  func() []Target
	// InFlight is the largest push window; with Fixed the window stays
	// there whatever happens.
	InFlight int
	Fixed    bool
	// Deadline is the ack deadline (the HTTP timeout of one push is 2 s
	// less); MinBackoff and MaxBackoff the retry policy's.
	Deadline, MinBackoff, MaxBackoff time.Duration
	// Client posts the pushes (nil: a client with the push timeout); the
	// demo posts to a handler in this process through its transport.
	Client *http.Client
	// OnAck, when set, is called with the data of every message answered 2xx.
	OnAck func(data []byte)
	// Accept, when set, is the subscription's filter on message attributes:
	// a message it does not accept is acknowledged at once and never
	// pushed, as Pub/Sub acknowledges what a subscription's filter does not
	// match. For an emulator that stores filters without applying them
	// (the Pub/Sub emulator, bus.TestProjectFiltersOnTheEmulator).
	Accept func(attrs map[string]string) bool
}

// Stats counts what a Pusher did.
type Stats struct {
	Deliveries      int         `json:"deliveries"`
	Acked           int         `json:"acked"`
	Nacked          int         `json:"nacked"`
	ByStatus        map[int]int `json:"byStatus"`
	TransportErrors int         `json:"transportErrors"`
	AckErrors       int         `json:"ackErrors"`
	Messages        int         `json:"messages"`
	MaxAttempts     int         `json:"maxAttempts"`
	MaxTimeToAckMs  int64       `json:"maxTimeToAckMs"`
	// Filtered counts messages acknowledged unpushed: Accept refused them.
	Filtered  int `json:"filtered"`
	MinWindow int `json:"minWindow"`
	MaxWindow int `json:"maxWindow"`
	// Over10 counts messages delivered more than 10 times (production
	// dead-letters after max_delivery_attempts, 10 by default, though with
	// its 10 s minimum backoff a message gets fewer attempts per minute).
	Over10 int `json:"over10"`
}

// initialWindow is the push window at start ("a small single-digit window").
const initialWindow = 3

// New returns a Pusher; Run starts it.
func New(c Config) *Pusher {
	p := &Pusher{name: c.Name, path: c.Path, sub: c.Subscription, api: c.API, targets: c.Targets, inflight: c.InFlight, fixed: c.Fixed,
		deadline: c.Deadline, minBack: c.MinBackoff, maxBack: c.MaxBackoff, finished: make(chan struct{}, 1), client: c.Client, onAck: c.OnAck, accept: c.Accept,
		outstanding: map[string]bool{}, attempts: map[string]int{}, firstSeen: map[string]time.Time{},
		acked: map[string]bool{}, toTarget: map[string]int{}, st: Stats{ByStatus: map[int]int{}}}
	if p.client == nil {
		p.client = &http.Client{Timeout: c.Deadline - 2*time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: c.InFlight}}
	}
	p.window = float64(min(initialWindow, c.InFlight))
	if c.Fixed {
		p.window = float64(c.InFlight)
	}
	p.st.MinWindow, p.st.MaxWindow = int(p.window), int(p.window)
	return p
}

// adjust moves the push window after a push that succeeded or not.
func (p *Pusher) adjust(ok bool) {
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

func (p *Pusher) free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.window) - int(p.active.Load())
}

// Run pulls and pushes until ctx ends, then waits for the requests in flight.
func (p *Pusher) Run(ctx context.Context) {
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
		refused := 0
		if err == nil {
			all := resp.GetReceivedMessages()
			msgs = p.filter(ctx, all)
			refused = len(all) - len(msgs)
		}
		if len(msgs) == 0 && refused > 0 {
			// Only messages the filter refuses: Pub/Sub would never have
			// delivered them, so they must cost no pause. Look again at
			// once, or a small window would skim another project's backlog
			// a message per pause.
			continue
		}
		if len(msgs) == 0 {
			p.lastEmpty.Store(time.Now().UnixNano())
			// An empty pull can answer at once (pstest does): pause a
			// little rather than spin on the CPU the service needs.
			pause := 20 * time.Millisecond
			if err != nil {
				pause = 100 * time.Millisecond
			}
			if wait.Sleep(ctx, pause) != nil {
				return
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

// filter acknowledges the messages Accept refuses and returns the others.
func (p *Pusher) filter(ctx context.Context, msgs []*pubsubpb.ReceivedMessage) []*pubsubpb.ReceivedMessage {
	if p.accept == nil {
		return msgs
	}
	var keep []*pubsubpb.ReceivedMessage
	var drop []string
	for _, m := range msgs {
		if p.accept(m.GetMessage().GetAttributes()) {
			keep = append(keep, m)
		} else {
			drop = append(drop, m.GetAckId())
		}
	}
	if len(drop) > 0 {
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := p.api.Acknowledge(actx, &pubsubpb.AcknowledgeRequest{Subscription: p.sub, AckIds: drop})
		cancel()
		p.mu.Lock()
		p.st.Filtered += len(drop)
		if err != nil {
			p.st.AckErrors++
		}
		p.mu.Unlock()
	}
	return keep
}

// pick returns the next live target, round-robin.
func (p *Pusher) pick() Target {
	all := p.targets()
	var live []Target
	for _, in := range all {
		if in.Up == nil || in.Up() {
			live = append(live, in)
		}
	}
	if len(live) == 0 {
		live = all
	}
	return live[int(p.rr.Add(1)-1)%len(live)]
}

func (p *Pusher) deliver(ctx context.Context, rm *pubsubpb.ReceivedMessage) {
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
	p.toTarget[in.Name]++
	p.mu.Unlock()

	body := handlers.NewPushEnvelope(handlers.PushMessage{Data: m.GetData(), Attributes: m.GetAttributes(), MessageID: id,
		PublishTime: m.GetPublishTime().AsTime(), Subscription: p.sub}).Encode()
	code, err := p.post(ctx, in.URL+p.path, body)

	p.mu.Lock()
	p.toTarget[in.Name]--
	if err != nil {
		p.st.TransportErrors++
	} else {
		p.st.ByStatus[code]++
	}
	ok := err == nil && (code == 102 || code == 200 || code == 201 || code == 202 || code == 204)
	p.mu.Unlock()
	p.adjust(ok)

	if ok {
		if p.onAck != nil {
			p.onAck(m.GetData())
		}
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
	secs := int32(back.Round(time.Second) / time.Second)
	if back < time.Second {
		// Below Pub/Sub's one-second resolution: hold the message that long,
		// then nack it for redelivery at once.
		_ = wait.Sleep(ctx, back)
		secs = 0
	}
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_ = p.api.ModifyAckDeadline(mctx, &pubsubpb.ModifyAckDeadlineRequest{Subscription: p.sub, AckIds: []string{rm.GetAckId()}, AckDeadlineSeconds: secs})
	cancel()
	p.mu.Lock()
	p.st.Nacked++
	p.mu.Unlock()
}

func (p *Pusher) post(ctx context.Context, url string, body []byte) (int, error) {
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

// InflightTo is how many pushes to the named instance are in flight.
func (p *Pusher) InflightTo(name string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.toTarget[name]
}

// Pending is the number of messages pulled but not acked (nacked ones
// waiting for redelivery included) plus the pushes in flight.
func (p *Pusher) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.outstanding) + int(p.active.Load())
}

// Acked is the number of distinct messages acked.
func (p *Pusher) Acked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.acked)
}

// IdleFor reports whether nothing is outstanding and every pull for at
// least d came back empty.
func (p *Pusher) IdleFor(d time.Duration) bool {
	if p.Pending() > 0 {
		return false
	}
	last := time.Unix(0, p.lastPull.Load())
	empty := time.Unix(0, p.lastEmpty.Load())
	return time.Since(last) >= d && empty.After(last)
}

// Window is the push window now: how many pushes may be in flight.
func (p *Pusher) Window() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return int(p.window)
}

// Active is the number of pushes in flight.
func (p *Pusher) Active() int64 { return p.active.Load() }

// Deliveries is the number of pushes made.
func (p *Pusher) Deliveries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.st.Deliveries
}

// Stats is what the Pusher did so far.
func (p *Pusher) Stats() Stats {
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

// Sum adds up the stats of several Pushers (one per subscription of a
// topic): counts add, the longest time to ack and the most deliveries of
// one message are the largest, the window range spans them all.
func Sum(all ...Stats) Stats {
	out := Stats{ByStatus: map[int]int{}}
	for i, s := range all {
		out.Deliveries += s.Deliveries
		out.Acked += s.Acked
		out.Nacked += s.Nacked
		for c, n := range s.ByStatus {
			out.ByStatus[c] += n
		}
		out.TransportErrors += s.TransportErrors
		out.AckErrors += s.AckErrors
		out.Messages += s.Messages
		out.MaxAttempts = max(out.MaxAttempts, s.MaxAttempts)
		out.MaxTimeToAckMs = max(out.MaxTimeToAckMs, s.MaxTimeToAckMs)
		out.Filtered += s.Filtered
		out.Over10 += s.Over10
		if i == 0 {
			out.MinWindow, out.MaxWindow = s.MinWindow, s.MaxWindow
		}
		out.MinWindow, out.MaxWindow = min(out.MinWindow, s.MinWindow), max(out.MaxWindow, s.MaxWindow)
	}
	return out
}

func (s Stats) String() string {
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
