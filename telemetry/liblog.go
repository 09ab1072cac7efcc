package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"log/slog"

	"google.golang.org/grpc/grpclog"
)

// RouteLibraryLogs sends what libraries print through the standard log
// package and gRPC's logger to l, so that every line on stdout and stderr is
// Cloud Logging JSON. gRPC's info chatter is dropped; its warnings and
// errors keep their severity.
func RouteLibraryLogs(l *slog.Logger) {
	log.SetFlags(0)
	log.SetOutput(lineWriter{l: l, level: slog.LevelInfo})
	grpclog.SetLoggerV2(grpcLogger{l: l})
}

// lineWriter turns each write of the standard logger into one record.
type lineWriter struct {
	l     *slog.Logger
	level slog.Level
}

func (w lineWriter) Write(p []byte) (int, error) {
	w.l.Log(context.Background(), w.level, string(bytes.TrimRight(p, "\n")), "logger", "stdlib")
	return len(p), nil
}

// grpcLogger adapts slog to grpclog.LoggerV2.
type grpcLogger struct{ l *slog.Logger }

func (g grpcLogger) log(level slog.Level, msg string) {
	g.l.Log(context.Background(), level, msg, "logger", "grpc")
}

func (g grpcLogger) Info(args ...any)                 {}
func (g grpcLogger) Infoln(args ...any)               {}
func (g grpcLogger) Infof(format string, args ...any) {}
func (g grpcLogger) Warning(args ...any)              { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningln(args ...any)            { g.log(slog.LevelWarn, fmt.Sprint(args...)) }
func (g grpcLogger) Warningf(format string, args ...any) {
	g.log(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Error(args ...any)   { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorln(args ...any) { g.log(slog.LevelError, fmt.Sprint(args...)) }
func (g grpcLogger) Errorf(format string, args ...any) {
	g.log(slog.LevelError, fmt.Sprintf(format, args...))
}
func (g grpcLogger) Fatal(args ...any)   { g.log(slog.LevelError+4, fmt.Sprint(args...)) }
func (g grpcLogger) Fatalln(args ...any) { g.log(slog.LevelError+4, fmt.Sprint(args...)) }
func (g grpcLogger) Fatalf(format string, args ...any) {
	g.log(slog.LevelError+4, fmt.Sprintf(format, args...))
}
func (g grpcLogger) V(l int) bool { return false }
