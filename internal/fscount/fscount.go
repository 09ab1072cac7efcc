// Package fscount counts Firestore operations with gRPC interceptors, so
// that benchmarks can report the documents a piece of work reads and
// writes (what Firestore bills), not just its time.
//
// It only counts: it must not change, delay or retry a call.
package fscount

import (
	"context"
	"os"
	"strings"
	"sync"

	"cloud.google.com/go/firestore/apiv1/firestorepb"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Counter counts documents read and written, and RPCs by method.
type Counter struct {
	mu      sync.Mutex
	reads   int
	writes  int
	methods map[string]int
	// byColl counts the documents written per collection id.
	byColl map[string]int
}

// New returns an empty counter.
func New() *Counter { return &Counter{methods: map[string]int{}, byColl: map[string]int{}} }

// Options returns the client options that route a Firestore client's
// calls through the counter. Against the emulator the client dials its own
// connection and ignores dial options, so there the connection is dialled
// here (with the emulator's owner credentials) and passed in whole.
func (c *Counter) Options() ([]option.ClientOption, error) {
	icpt := []grpc.DialOption{grpc.WithChainUnaryInterceptor(c.unary), grpc.WithChainStreamInterceptor(c.stream)}
	if addr := os.Getenv("FIRESTORE_EMULATOR_HOST"); addr != "" {
		conn, err := grpc.NewClient(addr, append(icpt,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(emulatorOwner{}))...)
		if err != nil {
			return nil, err
		}
		return []option.ClientOption{option.WithGRPCConn(conn)}, nil
	}
	return []option.ClientOption{option.WithGRPCDialOption(icpt[0]), option.WithGRPCDialOption(icpt[1])}, nil
}

// emulatorOwner is what the Firestore client sends the emulator: full
// access, no security rules.
type emulatorOwner struct{}

func (emulatorOwner) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}

func (emulatorOwner) RequireTransportSecurity() bool { return false }

// Snapshot returns the counts so far.
func (c *Counter) Snapshot() (reads, writes int, methods map[string]int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.methods))
	for k, v := range c.methods {
		m[k] = v
	}
	return c.reads, c.writes, m
}

// Reset sets every count to zero.
func (c *Counter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reads, c.writes, c.methods, c.byColl = 0, 0, map[string]int{}, map[string]int{}
}

// WritesByCollection returns the documents written per collection id
// (the last collection of the document's path: "snapshots", "tasks", ...).
func (c *Counter) WritesByCollection() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.byColl))
	for k, v := range c.byColl {
		m[k] = v
	}
	return m
}

// collection is the collection id of a document name
// (projects/p/databases/d/documents/col/doc or .../col/doc/sub/doc).
func collection(name string) string {
	parts := strings.Split(name, "/")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

func short(method string) string { return method[strings.LastIndex(method, "/")+1:] }

func (c *Counter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.methods[short(method)]++
	switch r := req.(type) {
	case *firestorepb.CommitRequest:
		c.writes += len(r.GetWrites())
		for _, w := range r.GetWrites() {
			name := w.GetDelete()
			if d := w.GetUpdate(); d != nil {
				name = d.GetName()
			}
			if name == "" {
				name = w.GetTransform().GetDocument()
			}
			c.byColl[collection(name)]++
		}
	case *firestorepb.GetDocumentRequest:
		c.reads++
	}
	return err
}

func (c *Counter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	c.mu.Lock()
	c.methods[short(method)]++
	c.mu.Unlock()
	if err != nil {
		return s, err
	}
	return &countingStream{ClientStream: s, c: c}, nil
}

type countingStream struct {
	grpc.ClientStream
	c *Counter
}

// RecvMsg counts the documents each streamed response carries: query
// results, batch-get hits (a miss also bills one read), and one read per
// aggregation result.
func (s *countingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		return err
	}
	n := 0
	switch r := m.(type) {
	case *firestorepb.RunQueryResponse:
		if r.GetDocument() != nil {
			n = 1
		}
	case *firestorepb.BatchGetDocumentsResponse:
		n = 1
	case *firestorepb.RunAggregationQueryResponse:
		if r.GetResult() != nil {
			n = 1
		}
	}
	s.c.mu.Lock()
	s.c.reads += n
	s.c.mu.Unlock()
	return nil
}
