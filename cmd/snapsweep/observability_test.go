package main

import (
	"context"
	"encoding/json"
	"github.com/snapsweep/snapsweep/service"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

func attr(kvs []attribute.KeyValue, key string) string {
	for _, kv := range kvs {
		if string(kv.Key) == key {
			return kv.Value.Emit()
		}
	}
	return ""
}

// TestOneTraceFromEventToDeletion: the span of the task.completed event
// continues through the cleanup message (traceparent in the attributes)
// into the cleanup handler, the engine and the Compute delete call; every
// documented metric is recorded with its attributes; handled-message log
// lines carry the trace.
func TestOneTraceFromEventToDeletion(t *testing.T) {
	t.Parallel()
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	e := startEnvWith(t, nil, service.Options{Tracer: tp, Meter: mp})
	e.pushTo(t, "migration-events", "/pubsub/migration-events")
	e.pushTo(t, "snapshot-cleanup", "/pubsub/snapshot-cleanup")
	e.fake.AddSnapshot(e.project, "traced-1", map[string]string{sessionLabel: "s1"})
	e.fake.FailNext(e.project, "traced-1", 1, http.StatusServiceUnavailable, "backendError")
	at := time.Now().UTC()
	e.publish(t, "migration-events", event("o1", events.SnapshotCreated, "s1", "t1", at, &events.SnapshotRef{Project: e.project, Name: "traced-1"}))
	e.publish(t, "migration-events", event("o2", events.TaskCompleted, "s1", "t1", at.Add(time.Second), nil))
	e.publish(t, "migration-events", []byte(`{"id":"bad"}`))
	waitFor(t, "deletion", 60*time.Second, func() (bool, string) {
		st := e.state(t, "traced-1")
		return st == store.Deleted, string(st)
	})
	waitFor(t, "spans ended", 10*time.Second, func() (bool, string) {
		for _, s := range sr.Ended() {
			if s.Name() == "process snapshot-cleanup" && attr(s.Attributes(), "snapsweep.snapshot") == e.project+"/traced-1" {
				return true, ""
			}
		}
		return false, "no cleanup span yet"
	})

	spans := sr.Ended()
	var cleanupSpan sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "process snapshot-cleanup" && attr(s.Attributes(), "snapsweep.snapshot") == e.project+"/traced-1" {
			cleanupSpan = s
		}
	}
	trace := cleanupSpan.SpanContext().TraceID()
	found := map[string]bool{}
	for _, s := range spans {
		if s.SpanContext().TraceID() != trace {
			continue
		}
		switch {
		// Whichever of the two events arrived last scheduled the cleanup
		// (push order is not guaranteed), so either may start the trace.
		case s.Name() == "process migration-events":
			found["event"] = true
			if attr(s.Attributes(), "messaging.system") != "gcp_pubsub" || attr(s.Attributes(), "messaging.message.id") == "" {
				t.Errorf("event span lacks messaging attributes: %v", s.Attributes())
			}
		case s.Name() == "cleanup snapshot":
			found["engine"] = true
		case attr(s.Attributes(), "http.request.method") == http.MethodDelete:
			found["compute delete"] = true
		}
	}
	for _, want := range []string{"event", "engine", "compute delete"} {
		if !found[want] {
			t.Errorf("trace %s has no %s span; spans in it: %v", trace, want, found)
		}
	}

	// A scheduled sweep through the HTTP endpoint: a JSON report, and its
	// own metrics.
	req := httptest.NewRequest(http.MethodPost, "/scheduler/sweep", strings.NewReader(`{"dryRun": true}`))
	req.Header.Set("X-CloudScheduler-ScheduleTime", time.Now().UTC().Format(time.RFC3339))
	rec := httptest.NewRecorder()
	e.svc.Handler.ServeHTTP(rec, req)
	var report map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &report); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("sweep: status %d, body %s", rec.Code, rec.Body)
	}
	if report["dryRun"] != true || report["checks"] == nil {
		t.Errorf("sweep report lacks dryRun/checks: %s", rec.Body)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	seen := map[string][]attribute.Set{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					seen[m.Name] = append(seen[m.Name], p.Attributes)
				}
			case metricdata.Gauge[int64]:
				for _, p := range d.DataPoints {
					seen[m.Name] = append(seen[m.Name], p.Attributes)
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					seen[m.Name] = append(seen[m.Name], p.Attributes)
				}
			}
		}
	}
	has := func(name string, kv ...attribute.KeyValue) bool {
		for _, set := range seen[name] {
			ok := true
			for _, want := range kv {
				if v, present := set.Value(want.Key); !present || v.Emit() != want.Value.Emit() {
					ok = false
				}
			}
			if ok {
				return true
			}
		}
		return false
	}
	checks := []struct {
		name string
		kv   []attribute.KeyValue
	}{
		{"snapsweep.messages.handled", []attribute.KeyValue{attribute.String("endpoint", "migration-events"), attribute.String("type", "task.completed"), attribute.String("outcome", "applied")}},
		{"snapsweep.messages.rejected", []attribute.KeyValue{attribute.String("endpoint", "migration-events"), attribute.String("reason", "missing_field")}},
		{"snapsweep.snapshots.registered", nil},
		{"snapsweep.cleanup.results", []attribute.KeyValue{attribute.String("result", "deleted")}},
		{"snapsweep.deletion.latency", []attribute.KeyValue{attribute.String("from", "registration")}},
		{"snapsweep.deletion.latency", []attribute.KeyValue{attribute.String("from", "request")}},
		{"snapsweep.compute.errors", []attribute.KeyValue{attribute.String("op", "get snapshot"), attribute.String("class", "transient")}},
		{"snapsweep.compute.breaker.state", nil},
		{"snapsweep.sweep.duration", []attribute.KeyValue{attribute.Bool("dry_run", true)}},
		{"snapsweep.health.status", []attribute.KeyValue{attribute.String("check", "firestore-read")}},
		{"snapsweep.snapshots.live", nil},
	}
	for _, c := range checks {
		if !has(c.name, c.kv...) {
			t.Errorf("metric %s with %v not recorded; seen %v", c.name, c.kv, seen[c.name])
		}
	}

	traced := 0
	for _, line := range strings.Split(strings.TrimSpace(e.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line not JSON: %q", line)
		}
		if m["messageId"] != nil && m["eventId"] != nil {
			if m["logging.googleapis.com/trace"] == nil || m["logging.googleapis.com/spanId"] == nil {
				t.Errorf("handled-message line without trace: %q", line)
			}
			traced++
		}
	}
	if traced == 0 {
		t.Error("no handled-message log lines")
	}
}
