package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/snapsweep/snapsweep/service"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/telemetry"
)

// Workload of BenchmarkIngest; scripts/bench.sh writes its figures into
// BENCHMARKS.md.
const (
	ingestTasks        = 200 // tasks per mix iteration (5 events each)
	ingestTasksPerSess = 50  // tasks of one migration session
	ingestConcurrency  = 32  // push requests in flight
	ingestSnapsPerTask = 3
	// ingestRetryDelay is how long a nacked push waits before it is posted
	// again; ingestMaxAttempts bounds the attempts of one event.
	ingestRetryDelay  = 250 * time.Millisecond
	ingestMaxAttempts = 20
)

// fsCounts are Firestore RPCs as the client sent them.
type fsCounts struct {
	Reads     int64 // BatchGetDocuments, GetDocument, RunQuery, RunAggregationQuery calls
	ReadDocs  int64 // documents those returned (found or missing; 1 for an empty query)
	Commits   int64 // Commit calls (a transaction that wrote nothing still commits)
	Writes    int64 // writes inside the commits (and BatchWrite)
	Begins    int64 // BeginTransaction calls: transactions, retries included
	Rollbacks int64 // Rollback calls
	Other     int64 // anything else
}

func (a fsCounts) sub(b fsCounts) fsCounts {
	return fsCounts{a.Reads - b.Reads, a.ReadDocs - b.ReadDocs, a.Commits - b.Commits, a.Writes - b.Writes,
		a.Begins - b.Begins, a.Rollbacks - b.Rollbacks, a.Other - b.Other}
}

func (a fsCounts) add(b fsCounts) fsCounts {
	return fsCounts{a.Reads + b.Reads, a.ReadDocs + b.ReadDocs, a.Commits + b.Commits, a.Writes + b.Writes,
		a.Begins + b.Begins, a.Rollbacks + b.Rollbacks, a.Other + b.Other}
}

// fsCounter counts Firestore RPCs with gRPC client interceptors, and
// times them by method.
type fsCounter struct {
	mu   sync.Mutex
	c    fsCounts
	time map[string]rpcTime
}

// rpcTime sums the latency of one method's calls (for streams: until the
// stream ended).
type rpcTime struct {
	N     int64
	Total time.Duration
}

func (c *fsCounter) observe(method string, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.time == nil {
		c.time = map[string]rpcTime{}
	}
	t := c.time[method]
	t.N++
	t.Total += d
	c.time[method] = t
}

func (c *fsCounter) times() map[string]rpcTime {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.time)
}

// subTimes returns a - b by method.
func subTimes(a, b map[string]rpcTime) map[string]rpcTime {
	out := map[string]rpcTime{}
	for m, t := range a {
		t.N -= b[m].N
		t.Total -= b[m].Total
		if t.N > 0 {
			out[m] = t
		}
	}
	return out
}

func (c *fsCounter) snapshot() fsCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.c
}

func (c *fsCounter) update(fn func(*fsCounts)) {
	c.mu.Lock()
	fn(&c.c)
	c.mu.Unlock()
}

func (c *fsCounter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.update(func(n *fsCounts) {
		switch path.Base(method) {
		case "Commit":
			n.Commits++
			if r, ok := req.(*firestorepb.CommitRequest); ok {
				n.Writes += int64(len(r.GetWrites()))
			}
		case "BatchWrite":
			if r, ok := req.(*firestorepb.BatchWriteRequest); ok {
				n.Writes += int64(len(r.GetWrites()))
			}
		case "GetDocument":
			n.Reads++
			n.ReadDocs++
		case "BeginTransaction":
			n.Begins++
		case "Rollback":
			n.Rollbacks++
		default:
			n.Other++
		}
	})
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	c.observe(path.Base(method), time.Since(start))
	return err
}

func (c *fsCounter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	name := path.Base(method)
	read := name == "BatchGetDocuments" || name == "RunQuery" || name == "RunAggregationQuery"
	c.update(func(n *fsCounts) {
		if read {
			n.Reads++
		} else {
			n.Other++
		}
	})
	start := time.Now()
	cs, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || !read {
		c.observe(name, time.Since(start))
		return cs, err
	}
	return &countingStream{ClientStream: cs, c: c, method: name, start: start, query: name != "BatchGetDocuments"}, nil
}

// countingStream counts the documents a read stream returns.
type countingStream struct {
	grpc.ClientStream
	c      *fsCounter
	method string
	start  time.Time
	query  bool
	docs   int64
	ended  bool
}

func (s *countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		if !s.ended && s.query && s.docs == 0 {
			// Firestore bills a query that returns nothing as one read.
			s.c.update(func(n *fsCounts) { n.ReadDocs++ })
		}
		if !s.ended {
			s.c.observe(s.method, time.Since(s.start))
		}
		s.ended = true
		return err
	}
	var got bool
	switch r := m.(type) {
	case *firestorepb.BatchGetDocumentsResponse:
		got = r.GetFound() != nil || r.GetMissing() != ""
	case *firestorepb.RunQueryResponse:
		got = r.GetDocument() != nil
	case *firestorepb.RunAggregationQueryResponse:
		got = r.GetResult() != nil
	}
	if got {
		s.docs++
		s.c.update(func(n *fsCounts) { n.ReadDocs++ })
	}
	return nil
}

// countingFirestoreOptions returns Firestore client options that count RPCs
// with c. Against the emulator the client ignores WithGRPCDialOption: it
// dials the emulator itself and passes the connection on with WithGRPCConn.
// So there the options carry a connection of our own, dialled the way the
// client dials the emulator (plaintext, "Bearer owner") plus the
// interceptors; elsewhere the dial options do it.
func countingFirestoreOptions(tb testing.TB, c *fsCounter) []option.ClientOption {
	tb.Helper()
	opts := []option.ClientOption{
		option.WithGRPCDialOption(grpc.WithChainUnaryInterceptor(c.unary)),
		option.WithGRPCDialOption(grpc.WithChainStreamInterceptor(c.stream)),
	}
	addr := os.Getenv("FIRESTORE_EMULATOR_HOST")
	if addr == "" {
		return opts
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(addr, "http://"),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(service.EmulatorCredentials()),
		grpc.WithChainUnaryInterceptor(c.unary),
		grpc.WithChainStreamInterceptor(c.stream),
	)
	if err != nil {
		tb.Fatalf("dial the Firestore emulator: %v", err)
	}
	tb.Cleanup(func() { conn.Close() })
	return append(opts, option.WithGRPCConn(conn))
}

// startServiceEnv is startEnv for benchmarks, with logs encoded and
// discarded (requests go to svc.Handler in-process).
func startServiceEnv(tb testing.TB, settings map[string]string, opts service.Options) *env {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = telemetry.NewLogger(io.Discard, nil, "bench")
	}
	return startEnvWith(tb, settings, opts)
}

// ingestBench is the state BenchmarkIngest's sub-benchmarks share.
type ingestBench struct {
	e       *env
	h       http.Handler
	counter *fsCounter
	base    time.Time
	seq     atomic.Int64
	nonce   string
}

func (ib *ingestBench) id(prefix string) string {
	return fmt.Sprintf("%s-%s-%d", prefix, ib.nonce, ib.seq.Add(1))
}

func (ib *ingestBench) ev(typ events.Type, session, task string, offset time.Duration, snap string) []byte {
	ev := events.Event{ID: ib.id("ev"), Type: typ, Time: ib.base.Add(offset), SessionID: session, TaskID: task}
	if snap != "" {
		ev.Snapshot = &events.SnapshotRef{Project: ib.e.project, Name: snap}
	}
	if typ == events.TaskFailed {
		ev.Error = "benchmark: task failed"
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// taskEvents returns a task's events in order: task.started, 3
// snapshot.created, and the final event (task.completed or task.failed;
// none if final is "").
func (ib *ingestBench) taskEvents(session string, final events.Type) (task string, evs [][]byte) {
	task = ib.id("t")
	evs = append(evs, ib.ev(events.TaskStarted, session, task, 0, ""))
	for i := range ingestSnapsPerTask {
		evs = append(evs, ib.ev(events.SnapshotCreated, session, task, time.Duration(i+1)*time.Second, ib.id("snap")))
	}
	if final != "" {
		evs = append(evs, ib.ev(final, session, task, 10*time.Second, ""))
	}
	return task, evs
}

// post sends one wrapped Pub/Sub push request in-process and returns the
// status code.
func (ib *ingestBench) post(data []byte) int {
	var msg struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(data, &msg)
	body, _ := json.Marshal(map[string]any{
		"message": map[string]any{"data": base64.StdEncoding.EncodeToString(data), "messageId": msg.ID,
			"message_id": msg.ID, "publishTime": time.Now().UTC()},
		"subscription": "projects/" + ib.e.project + "/subscriptions/migration-events-push",
	})
	req := httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", bytes.NewReader(body))
	rec := httptest.NewRecorder()
	ib.h.ServeHTTP(rec, req)
	return rec.Code
}

// deliver posts an event until it is acknowledged (2xx), as Pub/Sub
// redelivers a nacked push. It returns the number of redeliveries.
func (ib *ingestBench) deliver(data []byte) (int, error) {
	for attempt := 1; ; attempt++ {
		code := ib.post(data)
		if code >= 200 && code < 300 {
			return attempt - 1, nil
		}
		if attempt == ingestMaxAttempts {
			return attempt - 1, fmt.Errorf("event %.80s: still %d after %d attempts", data, code, attempt)
		}
		time.Sleep(ingestRetryDelay)
	}
}

func (ib *ingestBench) mustDeliver(b *testing.B, evs ...[]byte) {
	b.Helper()
	for _, ev := range evs {
		if _, err := ib.deliver(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// newSession starts a fresh session and returns its id.
func (ib *ingestBench) newSession(b *testing.B) string {
	s := ib.id("s")
	ib.mustDeliver(b, ib.ev(events.SessionStarted, s, "", 0, ""))
	return s
}

// costCase measures one event type in isolation: prepare does the setup
// (not counted) and returns the events to measure, all on fresh ids.
type costCase struct {
	name    string
	prepare func(b *testing.B, ib *ingestBench) [][]byte
}

// costResult is one line of the per-type table.
type costResult struct {
	name   string
	events int
	fs     fsCounts
	dur    time.Duration
}

func (r costResult) per(v int64) float64 { return float64(v) / float64(r.events) }

var costCases = []costCase{
	{"session.started", func(b *testing.B, ib *ingestBench) [][]byte {
		var evs [][]byte
		for range 10 {
			evs = append(evs, ib.ev(events.SessionStarted, ib.id("s"), "", 0, ""))
		}
		return evs
	}},
	{"task.started", func(b *testing.B, ib *ingestBench) [][]byte {
		s := ib.newSession(b)
		var evs [][]byte
		for range 10 {
			evs = append(evs, ib.ev(events.TaskStarted, s, ib.id("t"), 0, ""))
		}
		return evs
	}},
	{"snapshot.created", func(b *testing.B, ib *ingestBench) [][]byte {
		s := ib.newSession(b)
		var evs [][]byte
		for range 4 {
			_, te := ib.taskEvents(s, "")
			ib.mustDeliver(b, te[0])
			evs = append(evs, te[1:]...)
		}
		return evs
	}},
	{"task.completed", func(b *testing.B, ib *ingestBench) [][]byte {
		s := ib.newSession(b)
		var evs [][]byte
		for range 5 {
			_, te := ib.taskEvents(s, events.TaskCompleted)
			ib.mustDeliver(b, te[:len(te)-1]...)
			evs = append(evs, te[len(te)-1])
		}
		return evs
	}},
	{"task.failed", func(b *testing.B, ib *ingestBench) [][]byte {
		s := ib.newSession(b)
		var evs [][]byte
		for range 5 {
			_, te := ib.taskEvents(s, events.TaskFailed)
			ib.mustDeliver(b, te[:len(te)-1]...)
			evs = append(evs, te[len(te)-1])
		}
		return evs
	}},
	{"snapshot.deleted", func(b *testing.B, ib *ingestBench) [][]byte {
		s := ib.newSession(b)
		task := ib.id("t")
		ib.mustDeliver(b, ib.ev(events.TaskStarted, s, task, 0, ""))
		var evs [][]byte
		for range 10 {
			snap := ib.id("snap")
			ib.mustDeliver(b, ib.ev(events.SnapshotCreated, s, task, time.Second, snap))
			evs = append(evs, ib.ev(events.SnapshotDeleted, s, task, time.Minute, snap))
		}
		return evs
	}},
	{"duplicate", func(b *testing.B, ib *ingestBench) [][]byte {
		// A redelivered event that was applied before (here task.started).
		s := ib.newSession(b)
		var evs [][]byte
		for range 10 {
			ev := ib.ev(events.TaskStarted, s, ib.id("t"), 0, "")
			ib.mustDeliver(b, ev)
			evs = append(evs, ev)
		}
		return evs
	}},
	{"session.completed-5x3", func(b *testing.B, ib *ingestBench) [][]byte {
		// A session of 5 succeeded tasks with 3 snapshots each: it
		// republishes their 15 cleanup messages and judges the session.
		var evs [][]byte
		for range 2 {
			s := ib.newSession(b)
			for range 5 {
				_, te := ib.taskEvents(s, events.TaskCompleted)
				ib.mustDeliver(b, te...)
			}
			evs = append(evs, ib.ev(events.SessionCompleted, s, "", time.Minute, ""))
		}
		return evs
	}},
}

// BenchmarkIngest measures the migration-events push handler against the
// Firestore emulator (cleanup publishes go to the Pub/Sub emulator), with a
// gRPC interceptor counting Firestore RPCs:
//
//   - mix: events per second for a realistic mix, per task 1 task.started,
//     3 snapshot.created and 1 task.completed (in that order; 200 tasks in
//     sessions of 50, 32 requests in flight, posted to svc.Handler
//     in-process as Pub/Sub push posts them; each session's
//     session.started is applied first, untimed; an event still nacked
//     after 20 attempts is given up and counted as unacked);
//   - mix-session-per-task: the same with every task in a session of its
//     own, to show what the session document shared by concurrent events
//     costs;
//   - cost=TYPE: each event type alone on fresh ids, one at a time, with
//     the Firestore reads, writes and transactions per event.
//   - mix-cold-session, only with SNAPSWEEP_BENCH_COLD_SESSIONS=1: mix
//     without session.started first, so the first events of each session
//     race to create the session document.
//
// Run it once per figure: go test -run '^$' -bench Ingest -benchtime 1x ./cmd/snapsweep/
// Figures measure the emulator on this machine, not production Firestore;
// the RPC counts per event carry over, the times do not.
func BenchmarkIngest(b *testing.B) {
	counter := &fsCounter{}
	e := startServiceEnv(b, nil, service.Options{FirestoreOptions: countingFirestoreOptions(b, counter)})
	ib := &ingestBench{e: e, h: e.svc.Handler, counter: counter,
		base: time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Second), nonce: fmt.Sprintf("%x", time.Now().UnixNano()%0xfffff)}

	// Warm up connections; the interceptor must see the RPCs.
	ib.newSession(b)
	if got := counter.snapshot(); got.Reads == 0 || got.Commits == 0 {
		b.Fatalf("the Firestore interceptor counted nothing (%+v): the counting options did not reach the client", got)
	}

	mixes := []*mixResult{
		{name: "mix", perSession: ingestTasksPerSess},
		// The same events with every task in a session of its own: no
		// session document shared by concurrent events.
		{name: "mix-session-per-task", perSession: 1},
	}
	if os.Getenv("SNAPSWEEP_BENCH_COLD_SESSIONS") == "1" {
		// Opt-in: the mix without session.started, so that the first 32
		// events of every session race to create its document. On the
		// emulator this can collapse into lock timeouts and redelivery
		// for minutes; it is not part of the standard run.
		mixes = append(mixes, &mixResult{name: "mix-cold-session", perSession: ingestTasksPerSess, cold: true})
	}
	for _, mix := range mixes {
		b.Run(mix.name, func(b *testing.B) { ib.runMix(b, mix) })
	}

	results := map[string]costResult{}
	for _, cc := range costCases {
		b.Run("cost="+cc.name, func(b *testing.B) {
			r := costResult{name: cc.name}
			for b.Loop() {
				b.StopTimer()
				evs := cc.prepare(b, ib)
				before := counter.snapshot()
				b.StartTimer()
				start := time.Now()
				ib.mustDeliver(b, evs...)
				r.dur += time.Since(start)
				b.StopTimer()
				r.fs = r.fs.add(counter.snapshot().sub(before))
				r.events += len(evs)
				b.StartTimer()
			}
			results[cc.name] = r
			b.ReportMetric(r.per(r.fs.Reads), "reads/event")
			b.ReportMetric(r.per(r.fs.ReadDocs), "docs-read/event")
			b.ReportMetric(r.per(r.fs.Writes), "writes/event")
			b.ReportMetric(r.per(r.fs.Commits), "commits/event")
			b.ReportMetric(r.per(r.fs.Begins), "txns/event")
			b.ReportMetric(r.per(r.fs.Rollbacks), "rollbacks/event")
			b.ReportMetric(float64(r.dur.Microseconds())/1000/float64(r.events), "ms/event")
			b.Logf("%s", costHeader)
			b.Logf("%s", r.row())
		})
	}

	// Each sub-benchmark logs its own lines (shown under its result); the
	// parent's summary below is printed by go test only with -v.
	b.Logf("summary:")
	for _, mix := range mixes {
		if mix.events > 0 {
			mix.log(b)
		}
	}
	b.Logf("Firestore RPCs per event, each type alone on fresh ids, one at a time:")
	b.Logf("%s", costHeader)
	for _, cc := range costCases {
		if r, ok := results[cc.name]; ok && r.events > 0 {
			b.Logf("%s", r.row())
		}
	}
}

const costHeader = "event                  events   reads docs-read   writes  commits   txns  rollbacks  ms/event"

func (r costResult) row() string {
	return fmt.Sprintf("%-22s %6d %7.2f %9.2f %8.2f %8.2f %6.2f %10.2f %9.1f", r.name, r.events,
		r.per(r.fs.Reads), r.per(r.fs.ReadDocs), r.per(r.fs.Writes), r.per(r.fs.Commits),
		r.per(r.fs.Begins), r.per(r.fs.Rollbacks), float64(r.dur.Microseconds())/1000/float64(r.events))
}

func (mix *mixResult) log(b *testing.B) {
	b.Helper()
	n := float64(mix.events)
	b.Logf("%s: %d events (%d tasks x 5, sessions of %d, %d in flight) in %s = %.1f events/s acknowledged; p50 %s, p99 %s; %d redeliveries, %d given up",
		mix.name, mix.events, mix.events/5, mix.perSession, ingestConcurrency, mix.elapsed.Round(time.Millisecond),
		float64(mix.events-mix.unacked)/mix.elapsed.Seconds(), percentile(mix.lat, 0.5).Round(time.Millisecond), percentile(mix.lat, 0.99).Round(time.Millisecond),
		mix.redeliveries, mix.unacked)
	if mix.errSample != "" {
		b.Logf("%s: e.g. %s", mix.name, mix.errSample)
	}
	b.Logf("%s per event: %.2f reads (%.2f docs), %.2f writes, %.2f commits, %.2f transactions, %.3f rollbacks",
		mix.name, float64(mix.fs.Reads)/n, float64(mix.fs.ReadDocs)/n, float64(mix.fs.Writes)/n, float64(mix.fs.Commits)/n,
		float64(mix.fs.Begins)/n, float64(mix.fs.Rollbacks)/n)
	var rpcs []string
	for _, m := range slices.Sorted(maps.Keys(mix.rpc)) {
		t := mix.rpc[m]
		rpcs = append(rpcs, fmt.Sprintf("%s %d x %s", m, t.N, (t.Total/time.Duration(t.N)).Round(100*time.Microsecond)))
	}
	b.Logf("%s Firestore RPC mean latency (last iteration): %s", mix.name, strings.Join(rpcs, ", "))
}

// mixResult is what a mix sub-benchmark measured.
type mixResult struct {
	name                 string
	perSession           int  // tasks per migration session
	cold                 bool // no session.started first
	events, redeliveries int
	unacked              int // given up after ingestMaxAttempts
	errSample            string
	elapsed              time.Duration
	fs                   fsCounts
	rpc                  map[string]rpcTime
	lat                  []time.Duration
}

// runMix pushes ingestTasks tasks' events (task.started, 3 snapshot.created,
// task.completed, in order within a task) with ingestConcurrency requests in
// flight, redelivering nacked events.
func (ib *ingestBench) runMix(b *testing.B, mix *mixResult) {
	mix.events, mix.redeliveries, mix.unacked, mix.errSample = 0, 0, 0, ""
	mix.elapsed, mix.fs, mix.rpc, mix.lat = 0, fsCounts{}, nil, nil
	for b.Loop() {
		b.StopTimer()
		queue := make(chan [][]byte, ingestTasks)
		var s string
		for i := range ingestTasks {
			switch {
			case i%mix.perSession != 0:
			case mix.cold:
				s = ib.id("s")
			default:
				// A session starts before its tasks do: session.started is
				// applied first (setup, not timed), so the tasks' events
				// only read the session document. Without it (mix.cold)
				// the first events of a new session all race to create
				// that one document.
				s = ib.newSession(b)
			}
			_, te := ib.taskEvents(s, events.TaskCompleted)
			queue <- te
		}
		close(queue)
		var (
			mu   sync.Mutex
			errs []error
			wg   sync.WaitGroup
		)
		before, beforeT := ib.counter.snapshot(), ib.counter.times()
		b.StartTimer()
		start := time.Now()
		for range ingestConcurrency {
			wg.Go(func() {
				for te := range queue {
					for _, ev := range te {
						t := time.Now()
						n, err := ib.deliver(ev)
						d := time.Since(t)
						mu.Lock()
						mix.lat = append(mix.lat, d)
						mix.redeliveries += n
						mix.events++
						if err != nil {
							errs = append(errs, err)
						}
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		mix.elapsed += time.Since(start)
		b.StopTimer()
		mix.fs = mix.fs.add(ib.counter.snapshot().sub(before))
		mix.rpc = subTimes(ib.counter.times(), beforeT) // of the last iteration
		if len(errs) > 0 {
			// Given up after ingestMaxAttempts (Pub/Sub would dead-letter
			// them): reported, not fatal, so the figures still come out.
			mix.unacked += len(errs)
			mix.errSample = errs[0].Error()
		}
		b.StartTimer()
	}
	n := float64(mix.events)
	b.ReportMetric(float64(mix.events-mix.unacked)/mix.elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(percentile(mix.lat, 0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(percentile(mix.lat, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(mix.redeliveries), "redeliveries")
	b.ReportMetric(float64(mix.unacked), "unacked")
	b.ReportMetric(float64(mix.fs.Reads)/n, "reads/event")
	b.ReportMetric(float64(mix.fs.Writes)/n, "writes/event")
	b.ReportMetric(float64(mix.fs.Begins)/n, "txns/event")
	b.ReportMetric(float64(mix.fs.Rollbacks)/n, "rollbacks/event")
	mix.log(b)
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}
