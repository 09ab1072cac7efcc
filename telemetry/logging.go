// Package telemetry sets up snapsweep's logs, traces and metrics: log/slog
// JSON in Cloud Logging's field names with trace correlation, and the
// OpenTelemetry providers.
//
// It owns the plumbing only; what to log, count or trace is decided where
// the work is done, and it must never log secrets or whole config structs.
package telemetry

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"

	"go.opentelemetry.io/otel/trace"
)

type loggerKey struct{}

// WithLogger returns a context that carries l.
func WithLogger(ctx context.Context, l *slog.Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// Logger returns the context's logger, or slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey{}).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// NewLogger returns a JSON logger for Cloud Logging: `severity`, `message`,
// `time`, `logging.googleapis.com/sourceLocation`, and the trace and span of
// the context's span as `logging.googleapis.com/trace` / `spanId` (the trace
// in the projects/P/traces/T form Cloud Logging links when project is set).
func NewLogger(w io.Writer, level slog.Leveler, project string) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level:       level,
		AddSource:   false,
		ReplaceAttr: replaceAttr,
	})
	return slog.New(&cloudHandler{Handler: h, project: project})
}

func replaceAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "message"
	case slog.LevelKey:
		a.Key = "severity"
		lvl, _ := a.Value.Any().(slog.Level)
		a.Value = slog.StringValue(severity(lvl))
	}
	return a
}

func severity(l slog.Level) string {
	switch {
	case l >= slog.LevelError+4:
		return "CRITICAL"
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

// cloudHandler adds trace correlation and the source location in Cloud
// Logging's shape.
type cloudHandler struct {
	slog.Handler
	project string
}

func (h *cloudHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		tr := sc.TraceID().String()
		if h.project != "" {
			tr = "projects/" + h.project + "/traces/" + tr
		}
		r.AddAttrs(
			slog.String("logging.googleapis.com/trace", tr),
			slog.String("logging.googleapis.com/spanId", sc.SpanID().String()),
			slog.Bool("logging.googleapis.com/trace_sampled", sc.IsSampled()),
		)
	}
	if r.PC != 0 {
		fs := runtime.CallersFrames([]uintptr{r.PC})
		f, _ := fs.Next()
		r.AddAttrs(slog.Any("logging.googleapis.com/sourceLocation", map[string]string{
			"file": f.File, "line": strconv.Itoa(f.Line), "function": f.Function,
		}))
	}
	return h.Handler.Handle(ctx, r)
}

func (h *cloudHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &cloudHandler{Handler: h.Handler.WithAttrs(attrs), project: h.project}
}

func (h *cloudHandler) WithGroup(name string) slog.Handler {
	return &cloudHandler{Handler: h.Handler.WithGroup(name), project: h.project}
}
