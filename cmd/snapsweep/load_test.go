package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/snapsweep/snapsweep/service"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"cloud.google.com/go/pubsub/v2/pstest"
	"github.com/sethvargo/go-envconfig"
	"google.golang.org/api/option"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/telemetry"
)

// peakRSS is the process's peak resident set (VmHWM) in MiB.
func peakRSS() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(line)[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkLoadBurst posts a burst of 5,000 push requests, 200 at a time,
// over real HTTP to one service instance with the embedded store and an
// in-process Pub/Sub (pstest), and reports throughput, p50/p99 latency,
// errors and the process's peak RSS.
//
//	go test -run '^$' -bench BenchmarkLoadBurst -benchtime 1x ./cmd/snapsweep/
func BenchmarkLoadBurst(b *testing.B) {
	const total, concurrency = 5000, 200
	ctx := context.Background()
	srv := pstest.NewServer()
	defer srv.Close()
	conn, err := grpc.NewClient(srv.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	ps, err := pubsub.NewClient(ctx, "load-project", option.WithGRPCConn(conn))
	if err != nil {
		b.Fatal(err)
	}
	defer ps.Close()
	for _, topic := range []string{"migration-events", "snapshot-cleanup"} {
		if _, err := ps.TopicAdminClient.CreateTopic(ctx, &pubsubpb.Topic{Name: "projects/load-project/topics/" + topic}); err != nil {
			b.Fatal(err)
		}
	}
	fake := httptest.NewServer(gcefake.New(gcefake.Options{}))
	defer fake.Close()
	cfg, err := config.Load(ctx, envconfig.MapLookuper(map[string]string{
		"GOOGLE_CLOUD_PROJECT": "load-project", "SNAPSWEEP_COMPUTE_ENDPOINT": fake.URL,
	}))
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	svc, err := service.New(ctx, cfg, service.Options{Registry: store.NewMemory(), PubSub: ps, Listener: lis,
		Logger: telemetry.NewLogger(discard{}, nil, "load-project")})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Run(runCtx) }()
	defer func() { cancel(); <-done; svc.Close() }()

	// A realistic mix per task: started, three snapshots, completed.
	bodies := make([][]byte, 0, total)
	at := time.Now().UTC()
	for i := 0; len(bodies) < total; i++ {
		task := fmt.Sprintf("vm-%d", i)
		evs := [][]byte{event(fmt.Sprintf("%d-s", i), events.TaskStarted, "load", task, at, nil)}
		for k := range 3 {
			evs = append(evs, event(fmt.Sprintf("%d-c%d", i, k), events.SnapshotCreated, "load", task, at,
				&events.SnapshotRef{Project: "load-project", Name: fmt.Sprintf("snap-%d-%d", i, k)}))
		}
		evs = append(evs, event(fmt.Sprintf("%d-d", i), events.TaskCompleted, "load", task, at.Add(time.Second), nil))
		for _, data := range evs {
			body, _ := json.Marshal(map[string]any{"message": map[string]any{
				"data": base64.StdEncoding.EncodeToString(data), "messageId": fmt.Sprint(len(bodies))}})
			bodies = append(bodies, body)
		}
	}
	bodies = bodies[:total]
	url := "http://" + svc.Addr() + "/pubsub/migration-events"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}}

	for b.Loop() {
		latencies := make([]time.Duration, total)
		var failures int
		var mu sync.Mutex
		work := make(chan int)
		var wg sync.WaitGroup
		start := time.Now()
		for range concurrency {
			wg.Go(func() {
				for i := range work {
					t := time.Now()
					resp, err := client.Post(url, "application/json", bytes.NewReader(bodies[i]))
					latencies[i] = time.Since(t)
					if err != nil || resp.StatusCode != http.StatusOK {
						mu.Lock()
						failures++
						mu.Unlock()
					}
					if resp != nil {
						resp.Body.Close()
					}
				}
			})
		}
		for i := range total {
			work <- i
		}
		close(work)
		wg.Wait()
		elapsed := time.Since(start)
		slices.Sort(latencies)
		b.ReportMetric(float64(total)/elapsed.Seconds(), "req/s")
		b.ReportMetric(float64(latencies[total/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(latencies[total*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(failures), "errors")
		b.ReportMetric(peakRSS(), "peak-RSS-MiB")
		b.Logf("%d requests at %d concurrent in %s: %.0f req/s, p50 %s, p99 %s, %d errors, peak RSS %.0f MiB",
			total, concurrency, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(),
			latencies[total/2].Round(time.Microsecond), latencies[total*99/100].Round(time.Microsecond), failures, peakRSS())
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
