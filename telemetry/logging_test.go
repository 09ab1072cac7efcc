package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/grpclog"

	"github.com/snapsweep/snapsweep/telemetry"
)

// TestLogLinesAreCloudLoggingJSON: severity and message fields, the trace
// in Cloud Logging's form inside a span, and library output (standard log,
// gRPC) routed through the same handler.
func TestLogLinesAreCloudLoggingJSON(t *testing.T) {
	var buf bytes.Buffer
	l := telemetry.NewLogger(&buf, slog.LevelInfo, "my-proj")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	l.InfoContext(ctx, "handled", "messageId", "m1")
	span.End()
	l.Error("boom")
	telemetry.RouteLibraryLogs(l)
	log.Print("a library speaks")
	grpclog.Warning("grpc warns")
	grpclog.Info("grpc chatter is dropped")

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(lines), buf.String())
	}
	var recs []map[string]any
	for _, line := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		if m["severity"] == nil || m["message"] == nil {
			t.Errorf("line without severity/message: %q", line)
		}
		recs = append(recs, m)
	}
	wantTrace := "projects/my-proj/traces/" + span.SpanContext().TraceID().String()
	if recs[0]["logging.googleapis.com/trace"] != wantTrace || recs[0]["logging.googleapis.com/spanId"] != span.SpanContext().SpanID().String() {
		t.Errorf("trace fields = %v / %v, want %s", recs[0]["logging.googleapis.com/trace"], recs[0]["logging.googleapis.com/spanId"], wantTrace)
	}
	for i, want := range []string{"INFO", "ERROR", "INFO", "WARNING"} {
		if recs[i]["severity"] != want {
			t.Errorf("line %d severity %v, want %s", i, recs[i]["severity"], want)
		}
	}
}
