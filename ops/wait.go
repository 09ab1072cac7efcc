package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"google.golang.org/grpc"
)

// The operator commands never wait silently: every call to Firestore,
// Pub/Sub or Compute is registered with the command's waits (carried in
// its context), so that after noticeAfter on a terminal the command says
// what it is waiting for, and a command that runs out of time (--timeout)
// names the endpoint it was waiting for and the last error it got there.

// noticeAfter is how long a call may run before a terminal is told.
const noticeAfter = 2 * time.Second

// waits tracks a command's calls in flight, per endpoint.
type waits struct {
	mu       sync.Mutex
	next     int
	inflight map[int]wait
	lastErr  map[string]error
	told     map[string]bool
	// pending is, per endpoint, since when the command has waited for an
	// answer: the first call since the last success (retries included).
	pending map[string]time.Time
	// last is the endpoint of the latest call begun.
	last string
}

type wait struct {
	endpoint string
	since    time.Time
}

func newWaits() *waits {
	return &waits{inflight: map[int]wait{}, lastErr: map[string]error{}, told: map[string]bool{}, pending: map[string]time.Time{}}
}

type waitsKey struct{}

func withWaits(ctx context.Context, w *waits) context.Context {
	return context.WithValue(ctx, waitsKey{}, w)
}

// waitsFrom returns the command's waits; a context without them gets a
// throwaway one, so that callers need not check.
func waitsFrom(ctx context.Context) *waits {
	if w, ok := ctx.Value(waitsKey{}).(*waits); ok {
		return w
	}
	return newWaits()
}

// begin registers a call to endpoint; call the result with its error.
func (w *waits) begin(endpoint string) func(error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	id := w.next
	w.next++
	w.inflight[id] = wait{endpoint: endpoint, since: time.Now()}
	w.last = endpoint
	if _, ok := w.pending[endpoint]; !ok {
		w.pending[endpoint] = time.Now()
	}
	return func(err error) {
		w.mu.Lock()
		defer w.mu.Unlock()
		delete(w.inflight, id)
		if err == nil {
			delete(w.pending, endpoint)
		}
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
			w.lastErr[endpoint] = err
		}
	}
}

// slow returns the endpoints that have not answered for longer than d
// (a call in flight, or failing and retried), not announced yet, and marks
// them announced.
func (w *waits) slow(d time.Duration) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for endpoint, since := range w.pending {
		if time.Since(since) >= d && !w.told[endpoint] {
			w.told[endpoint] = true
			out = append(out, endpoint)
		}
	}
	return out
}

// stuck is the endpoint the command was waiting for (the longest call in
// flight, else the latest one begun) and the last error it answered.
func (w *waits) stuck() (string, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	endpoint, since := w.last, time.Time{}
	for _, c := range w.inflight {
		if since.IsZero() || c.since.Before(since) {
			endpoint, since = c.endpoint, c.since
		}
	}
	return endpoint, w.lastErr[endpoint]
}

// notice tells a terminal, once per endpoint, what the command waits for,
// until stop is called.
func (w *waits) notice(out io.Writer, timeout time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, e := range w.slow(noticeAfter) {
					fmt.Fprintf(out, "waiting for %s … (gives up after %s; --timeout)\n", e, timeout)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// timedOut explains a command that ran out of time.
func (w *waits) timedOut(timeout time.Duration, err error) error {
	endpoint, cause := w.stuck()
	if endpoint == "" {
		return fmt.Errorf("gave up after %s (--timeout): %w", timeout, err)
	}
	if cause == nil {
		cause = err
	}
	return fmt.Errorf("no answer from %s within %s (--timeout): %w", endpoint, timeout, cause)
}

// grpcWaits are the dial options that register every call of a gRPC
// client with the command's waits.
func grpcWaits(endpoint string) []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			end := waitsFrom(ctx).begin(endpoint)
			err := invoker(ctx, method, req, reply, cc, opts...)
			end(err)
			return err
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			end := waitsFrom(ctx).begin(endpoint)
			s, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				end(err)
				return nil, err
			}
			return &waitedStream{ClientStream: s, end: end}, nil
		}),
	}
}

// waitedStream ends its wait at the first message or error.
type waitedStream struct {
	grpc.ClientStream
	once sync.Once
	end  func(error)
}

func (s *waitedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == io.EOF {
		s.once.Do(func() { s.end(nil) })
	} else {
		s.once.Do(func() { s.end(err) })
	}
	return err
}

// waitedTransport registers every HTTP call with the command's waits.
type waitedTransport struct {
	endpoint string
	base     http.RoundTripper
}

func (t waitedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	end := waitsFrom(r.Context()).begin(t.endpoint)
	resp, err := t.base.RoundTrip(r)
	if err == nil && resp.StatusCode >= 500 {
		end(fmt.Errorf("%s", resp.Status))
	} else {
		end(err)
	}
	return resp, err
}
