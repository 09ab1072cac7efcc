// Package handlers is snapsweep's HTTP surface: Pub/Sub push endpoints, the
// Cloud Scheduler sweep endpoint and the probes. It decodes requests, hands
// them to the packages that do the work, and maps outcomes to status codes:
// 2xx acknowledges, 5xx only for trouble a redelivery may fix.
//
// It must not decide anything about a snapshot or keep state between
// requests: ingest, cleanup and sweep do the work, and every answer is safe
// to repeat (Pub/Sub redelivers).
package handlers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	grpccodes "google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/ingest"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
	"github.com/snapsweep/snapsweep/telemetry"
)

// EventApplier applies a validated migration event.
type EventApplier interface {
	Apply(ctx context.Context, ev events.Event) (ingest.Outcome, error)
}

// CleanupHandler processes one cleanup message.
type CleanupHandler interface {
	Handle(ctx context.Context, m events.CleanupMessage) (cleanup.Outcome, error)
}

// Sweeper runs one scheduled sweep and returns its report.
// runID identifies the scheduled run: two deliveries of one run share it.
type Sweeper interface {
	Run(ctx context.Context, dryRun bool, runID string) (*sweep.Report, error)
}

// SweepRequest is the body of POST /scheduler/sweep plus what the Cloud
// Scheduler headers say about the run.
type SweepRequest struct {
	DryRun bool `json:"dryRun"`
	// RunID identifies the scheduled run (X-CloudScheduler-ScheduleTime):
	// two deliveries of the same run share it.
	RunID string `json:"-"`
}

// RejectRecorder keeps messages that can never be processed.
type RejectRecorder interface {
	AddRejected(ctx context.Context, r store.Rejected) error
}

// Check is one dependency check of /ready.
type Check struct {
	Name string
	Run  func(ctx context.Context) error
}

// Config wires a Server. Events and Rejects are required.
type Config struct {
	Events  EventApplier
	Cleanup CleanupHandler
	Sweeper Sweeper
	Rejects RejectRecorder
	// Ready lists the dependency checks of /ready.
	Ready []Check
	// Status renders /status (JSON-encodable); session is the optional
	// ?session= filter (one session's record and counts).
	Status func(ctx context.Context, session string) (any, error)
	// Auth, when set, guards the push and scheduler endpoints.
	Auth func(http.Handler) http.Handler
	// Logger is the base logger (default slog.Default()).
	Logger *slog.Logger
	// Meter provides the metrics (default: the global provider).
	Meter metric.MeterProvider
	// Tracer provides the spans (default: the global provider).
	Tracer trace.TracerProvider
	// Now is the clock (default time.Now).
	Now func() time.Time
	// RejectedTTL is how long rejected messages are kept (default 30 days).
	RejectedTTL time.Duration
	// PushTimeout bounds the work on one pushed message (default 10s): a
	// message that cannot be processed within it (a dependency down or
	// stalled) is answered 503 and redelivered, rather than holding one of
	// Pub/Sub's push slots for the whole outage.
	PushTimeout time.Duration
}

// Server holds the handlers.
type Server struct {
	cfg      Config
	log      *slog.Logger
	tracer   trace.Tracer
	handled  metric.Int64Counter
	rejected metric.Int64Counter
}

// New validates cfg and returns a server.
func New(cfg Config) (*Server, error) {
	var errs []error
	if cfg.Events == nil {
		errs = append(errs, errors.New("handlers: Events is required"))
	}
	if cfg.Rejects == nil {
		errs = append(errs, errors.New("handlers: Rejects is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Meter == nil {
		cfg.Meter = otel.GetMeterProvider()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tracer == nil {
		cfg.Tracer = otel.GetTracerProvider()
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = 10 * time.Second
	}
	if cfg.RejectedTTL <= 0 {
		cfg.RejectedTTL = 30 * 24 * time.Hour
	}
	m := cfg.Meter.Meter("github.com/snapsweep/snapsweep/handlers")
	s := &Server{cfg: cfg, log: cfg.Logger, tracer: cfg.Tracer.Tracer("github.com/snapsweep/snapsweep/handlers")}
	var err error
	if s.handled, err = m.Int64Counter("snapsweep.messages.handled", metric.WithUnit("{message}"),
		metric.WithDescription("Push messages handled, by endpoint, event type and outcome.")); err != nil {
		return nil, err
	}
	if s.rejected, err = m.Int64Counter("snapsweep.messages.rejected", metric.WithUnit("{message}"),
		metric.WithDescription("Messages that can never be processed, by endpoint and reason.")); err != nil {
		return nil, err
	}
	return s, nil
}

// Routes returns the service's handler.
func (s *Server) Routes() http.Handler {
	mux := http.NewServeMux()
	guard := func(h http.Handler) http.Handler {
		if s.cfg.Auth != nil {
			return s.cfg.Auth(h)
		}
		return h
	}
	mux.Handle("POST /pubsub/migration-events", guard(http.HandlerFunc(s.handleMigrationEvent)))
	mux.Handle("POST /pubsub/snapshot-cleanup", guard(http.HandlerFunc(s.handleCleanup)))
	mux.Handle("POST /scheduler/sweep", guard(http.HandlerFunc(s.handleSweep)))
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("GET /ready", s.handleReady)
	mux.HandleFunc("GET /status", s.handleStatus)
	return mux
}

// process starts the consumer span of one pushed message. Its parent is
// the trace context the publisher put in the message attributes (W3C
// traceparent), so a snapshot's trace runs from the migration event through
// the cleanup message into the deletion; the HTTP request's own span is
// linked. Without a traceparent the span is a child of the request span.
func (s *Server) process(r *http.Request, endpoint string, msg PushMessage) (context.Context, trace.Span) {
	ctx := r.Context()
	link := trace.LinkFromContext(ctx)
	if len(msg.Attributes) > 0 {
		ctx = otel.GetTextMapPropagator().Extract(ctx, propagation.MapCarrier(msg.Attributes))
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "gcp_pubsub"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.operation.name", "push"),
		attribute.String("messaging.destination.name", endpoint),
		attribute.String("messaging.message.id", msg.MessageID),
		attribute.Int("messaging.message.body.size", len(msg.Data)),
	}
	if msg.Subscription != "" {
		attrs = append(attrs, attribute.String("messaging.destination.subscription.name", msg.Subscription))
	}
	return s.tracer.Start(ctx, "process "+endpoint, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithLinks(link), trace.WithAttributes(attrs...))
}

// reject records a message that can never be processed and acknowledges
// it. Only a failure to record it makes the caller retry.
func (s *Server) reject(w http.ResponseWriter, r *http.Request, endpoint string, msg PushMessage, payload []byte, rej *events.RejectError) {
	ctx := r.Context()
	now := s.cfg.Now().UTC()
	id := msg.MessageID
	if id == "" {
		sum := sha256.Sum256(payload)
		id = "sha256-" + hex.EncodeToString(sum[:16])
	}
	id = endpoint + "~" + strings.ReplaceAll(id, "/", "_")
	kept := payload
	truncated := false
	if len(kept) > store.MaxRejectedPayload {
		kept, truncated = kept[:store.MaxRejectedPayload], true
	}
	rec := store.Rejected{
		ID: id, MessageID: msg.MessageID, Endpoint: endpoint, Reason: string(rej.Reason), Field: rej.Field,
		Detail: rej.Error(), Payload: strings.ToValidUTF8(string(kept), "\uFFFD"), Truncated: truncated,
		Size: len(payload), ReceivedAt: now, ExpireAt: now.Add(s.cfg.RejectedTTL), Subscription: msg.Subscription,
	}
	if err := s.cfg.Rejects.AddRejected(ctx, rec); err != nil {
		telemetry.Logger(ctx).ErrorContext(ctx, "could not record rejected message; asking for redelivery",
			"messageId", msg.MessageID, "reason", rej.Reason, "error", err)
		http.Error(w, "could not record rejected message", http.StatusServiceUnavailable)
		return
	}
	s.rejected.Add(ctx, 1, metric.WithAttributes(attribute.String("endpoint", endpoint), attribute.String("reason", string(rej.Reason))))
	telemetry.Logger(ctx).WarnContext(ctx, "rejected message acknowledged",
		"endpoint", endpoint, "messageId", msg.MessageID, "reason", rej.Reason, "field", rej.Field, "detail", rej.Detail)
	writeJSON(w, http.StatusOK, map[string]any{"status": "rejected", "reason": rej.Reason, "detail": rej.Error()})
}

// decode reads a push request. It answers the request itself (413 or a
// recorded rejection) and returns ok=false when there is nothing to process.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, endpoint string) (PushMessage, bool) {
	msg, err := DecodePush(r)
	if errors.Is(err, ErrTooLarge) {
		s.rejected.Add(r.Context(), 1, metric.WithAttributes(attribute.String("endpoint", endpoint), attribute.String("reason", string(events.ReasonTooLarge))))
		telemetry.Logger(r.Context()).WarnContext(r.Context(), "push body over 1 MiB refused", "endpoint", endpoint)
		http.Error(w, ErrTooLarge.Error(), http.StatusRequestEntityTooLarge)
		return msg, false
	}
	if rej, ok := events.AsReject(err); ok {
		s.reject(w, r, endpoint, msg, msg.Data, rej)
		return msg, false
	}
	if err != nil {
		s.reject(w, r, endpoint, msg, msg.Data, &events.RejectError{Reason: events.ReasonBadEnvelope, Detail: err.Error()})
		return msg, false
	}
	return msg, true
}

// status maps a processing error to a status code: 503 for trouble a
// redelivery may fix, 500 for anything unexpected (also redelivered, and
// dead-lettered in the end). It is the one place that decides.
func status(err error) int {
	if Transient(err) {
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// Transient reports whether err is trouble a redelivery may fix: the
// registry unavailable (store.ErrUnavailable, which also covers a closed
// transaction after a Firestore restart), the engine asking for a retry
// (breaker, quota, lease), a deadline or cancellation (the push deadline, a
// shutdown), or a transient gRPC (Pub/Sub publish) or HTTP (Compute) answer
// that reached here unclassified.
func Transient(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, cleanup.ErrRetryLater),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return true
	}
	switch grpcstatus.Code(err) {
	case grpccodes.Unavailable, grpccodes.DeadlineExceeded, grpccodes.Aborted,
		grpccodes.ResourceExhausted, grpccodes.Canceled:
		return true
	}
	switch gce.Classify(err) {
	case gce.ClassTransient, gce.ClassRateLimited:
		return true
	}
	return false
}

// withPushTimeout bounds the request's work by PushTimeout.
func (s *Server) withPushTimeout(r *http.Request) (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PushTimeout)
	return r.WithContext(ctx), cancel
}

const endpointEvents = "migration-events"

func (s *Server) handleMigrationEvent(w http.ResponseWriter, r *http.Request) {
	r, cancel := s.withPushTimeout(r)
	defer cancel()
	msg, ok := s.decode(w, r, endpointEvents)
	if !ok {
		return
	}
	ctx, span := s.process(r, endpointEvents, msg)
	defer span.End()
	ev, err := events.Decode(msg.Data)
	if rej, ok := events.AsReject(err); ok {
		s.reject(w, r.WithContext(ctx), endpointEvents, msg, msg.Data, rej)
		return
	}
	log := telemetry.Logger(ctx).With("messageId", msg.MessageID, "eventId", ev.ID, "eventType", ev.Type,
		"sessionId", ev.SessionID, "taskId", ev.TaskID)
	if ev.Snapshot != nil {
		log = log.With("snapshot", ev.Snapshot.Project+"/"+ev.Snapshot.Name)
	}
	span.SetAttributes(attribute.String("snapsweep.event.type", string(ev.Type)), attribute.String("snapsweep.session.id", ev.SessionID))
	out, err := s.cfg.Events.Apply(ctx, ev)
	if rej, ok := events.AsReject(err); ok {
		// The processor enforces the rules (allowlist, clock skew, id
		// reuse); here a rejection only becomes an acknowledged record.
		s.reject(w, r.WithContext(ctx), endpointEvents, msg, msg.Data, rej)
		return
	}
	attrs := []attribute.KeyValue{attribute.String("endpoint", endpointEvents), attribute.String("type", string(ev.Type))}
	if err != nil {
		code := status(err)
		s.handled.Add(ctx, 1, metric.WithAttributes(append(attrs, attribute.String("outcome", "retry"))...))
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, "event not applied")
		log.ErrorContext(ctx, "event not applied; asking for redelivery", "error", err, "status", code)
		http.Error(w, "event not applied, retry later", code)
		return
	}
	outcome := "applied"
	if out.Duplicate {
		outcome = "duplicate"
	}
	s.handled.Add(ctx, 1, metric.WithAttributes(append(attrs, attribute.String("outcome", outcome))...))
	log.InfoContext(ctx, "event "+outcome, "scheduled", out.Scheduled, "note", out.Note)
	writeJSON(w, http.StatusOK, map[string]any{"status": outcome, "scheduled": out.Scheduled, "note": out.Note})
}

const endpointCleanup = "snapshot-cleanup"

func (s *Server) handleCleanup(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Cleanup == nil {
		http.Error(w, "cleanup handler not configured", http.StatusServiceUnavailable)
		return
	}
	r, cancel := s.withPushTimeout(r)
	defer cancel()
	msg, ok := s.decode(w, r, endpointCleanup)
	if !ok {
		return
	}
	ctx, span := s.process(r, endpointCleanup, msg)
	defer span.End()
	m, err := events.DecodeCleanup(msg.Data)
	if rej, ok := events.AsReject(err); ok {
		s.reject(w, r.WithContext(ctx), endpointCleanup, msg, msg.Data, rej)
		return
	}
	log := telemetry.Logger(ctx).With("messageId", msg.MessageID, "snapshot", m.Project+"/"+m.Name,
		"sessionId", m.SessionID, "taskId", m.TaskID, "reason", m.Reason)
	span.SetAttributes(attribute.String("snapsweep.snapshot", m.Project+"/"+m.Name), attribute.String("snapsweep.session.id", m.SessionID))
	out, err := s.cfg.Cleanup.Handle(ctx, m)
	if rej, ok := events.AsReject(err); ok {
		s.reject(w, r.WithContext(ctx), endpointCleanup, msg, msg.Data, rej)
		return
	}
	attrs := []attribute.KeyValue{attribute.String("endpoint", endpointCleanup), attribute.String("type", string(m.Reason))}
	if err != nil {
		code := status(err)
		s.handled.Add(ctx, 1, metric.WithAttributes(append(attrs, attribute.String("outcome", "retry"))...))
		span.RecordError(err)
		span.SetStatus(otelcodes.Error, "cleanup not finished")
		log.WarnContext(ctx, "cleanup not finished; asking for redelivery", "error", err, "status", code)
		http.Error(w, "cleanup not finished, retry later", code)
		return
	}
	s.handled.Add(ctx, 1, metric.WithAttributes(append(attrs, attribute.String("outcome", string(out.Result)))...))
	level := slog.LevelInfo
	if out.Result == cleanup.ResultRefused || out.Result == cleanup.ResultFailed {
		level = slog.LevelError
	}
	log.Log(ctx, level, "cleanup "+string(out.Result), "state", out.State, "why", out.Why, "attempts", out.Attempts)
	writeJSON(w, http.StatusOK, out)
}

// MaxSweepBody bounds the scheduler's request body.
const MaxSweepBody = 64 << 10

// DecodeSweepRequest reads the optional JSON body of POST /scheduler/sweep.
func DecodeSweepRequest(r *http.Request) (SweepRequest, error) {
	req := SweepRequest{RunID: r.Header.Get("X-CloudScheduler-ScheduleTime")}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxSweepBody+1))
	if err != nil {
		return req, &events.RejectError{Reason: events.ReasonBadJSON, Detail: "sweep body: " + err.Error()}
	}
	if len(body) > MaxSweepBody {
		return req, &events.RejectError{Reason: events.ReasonTooLarge, Detail: fmt.Sprintf("sweep body over %d bytes", MaxSweepBody)}
	}
	if len(bytes.Trim(body, " \t\r\n")) == 0 { // JSON whitespace only
		return req, nil
	}
	// Exact keys only: encoding/json matches keys case-insensitively, and
	// {"dryRun":true,"DRYRUN":false} must not turn a dry run into a real one.
	var fields map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&fields); err != nil {
		return req, &events.RejectError{Reason: events.ReasonBadJSON, Detail: "sweep body: " + err.Error()}
	}
	if dec.More() {
		return req, &events.RejectError{Reason: events.ReasonBadJSON, Detail: "sweep body: data after the JSON object"}
	}
	if raw, ok := fields["dryRun"]; ok {
		if err := json.Unmarshal(raw, &req.DryRun); err != nil {
			return req, &events.RejectError{Reason: events.ReasonInvalidField, Field: "dryRun", Detail: "dryRun must be a boolean"}
		}
	}
	return req, nil
}

func (s *Server) handleSweep(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Sweeper == nil {
		http.Error(w, "sweep not configured", http.StatusServiceUnavailable)
		return
	}
	req, err := DecodeSweepRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	report, err := s.cfg.Sweeper.Run(r.Context(), req.DryRun, req.RunID)
	if err != nil {
		telemetry.Logger(r.Context()).ErrorContext(r.Context(), "sweep failed", "error", err)
		writeJSON(w, status(err), map[string]any{"error": err.Error(), "report": report})
		return
	}
	writeJSON(w, http.StatusOK, report)
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	results := make(map[string]string, len(s.cfg.Ready))
	code := http.StatusOK
	type res struct {
		name string
		err  error
	}
	ch := make(chan res, len(s.cfg.Ready))
	for _, c := range s.cfg.Ready {
		go func() { ch <- res{c.Name, c.Run(ctx)} }()
	}
	for range s.cfg.Ready {
		x := <-ch
		if x.err != nil {
			results[x.name] = "failing: " + x.err.Error()
			code = http.StatusServiceUnavailable
		} else {
			results[x.name] = "ok"
		}
	}
	writeJSON(w, code, map[string]any{"ready": code == http.StatusOK, "checks": results})
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Status == nil {
		writeJSON(w, http.StatusOK, map[string]string{})
		return
	}
	st, err := s.cfg.Status(r.Context(), r.URL.Query().Get("session"))
	if errors.Is(err, store.ErrNotFound) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
		return
	}
	if err != nil {
		writeJSON(w, status(err), map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
