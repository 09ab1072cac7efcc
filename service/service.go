// Package service assembles snapsweep from its configuration: it opens the
// clients (Firestore, Pub/Sub, Compute), builds the registry, the cleanup
// scheduler and engine, the sweep and the HTTP handler, and owns closing
// them. NewComponents builds those parts without a listener (the demo, the
// operator commands and tests use it); New adds the listener that `serve`
// runs.
//
// It owns wiring only: it makes no decision about a snapshot (package
// lifecycle does, through cleanup and sweep) and keeps nothing in process
// memory that another instance would need.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"cloud.google.com/go/pubsub/v2"
	"cloud.google.com/go/pubsub/v2/apiv1/pubsubpb"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/snapsweep/snapsweep/auth"
	"github.com/snapsweep/snapsweep/bus"
	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/handlers"
	"github.com/snapsweep/snapsweep/ingest"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
	"github.com/snapsweep/snapsweep/telemetry"
)

// Options carries what tests, the demo and the operator commands inject.
type Options struct {
	// Registry replaces the Firestore registry (the demo's store.Memory).
	Registry store.Registry
	// PubSub replaces the Pub/Sub client (the demo's pstest); the caller
	// keeps and closes it.
	PubSub *pubsub.Client
	Logger *slog.Logger
	// Listener, when set, is used instead of listening on cfg.Port (New only).
	Listener net.Listener
	// ComputeHTTP, when set, is the HTTP client of the Compute API.
	ComputeHTTP *http.Client
	// FirestoreOptions are extra client options of the Firestore client
	// (benchmarks count operations with a gRPC interceptor).
	FirestoreOptions []option.ClientOption
	// Now is the clock (default time.Now).
	Now func() time.Time
	// AuthOptions are client options of the OIDC verifier (tests serve
	// their own signing keys).
	AuthOptions []option.ClientOption
	// Tracer and Meter replace the global OpenTelemetry providers (tests
	// use in-memory exporters).
	Tracer trace.TracerProvider
	Meter  metric.MeterProvider
	// Version is reported by /status and the start log line.
	Version string
}

// Components are the parts of a snapsweep service, built but not serving.
type Components struct {
	Config    *config.Config
	Log       *slog.Logger
	Store     store.Registry
	Scheduler *cleanup.Scheduler
	Engine    *cleanup.Engine
	Sweeper   *sweep.Sweeper
	// Handler is the whole HTTP surface (handlers.Server's routes with
	// tracing and the logger in every request's context).
	Handler http.Handler
	// Status answers GET /status.
	Status  *StatusSource
	closers []func() error
}

// NewComponents builds every part of the service from cfg: clients,
// registry, scheduler, engine, sweep and the HTTP handler. Nothing listens.
// Close releases what it opened.
func NewComponents(ctx context.Context, cfg *config.Config, opts Options) (_ *Components, err error) {
	c := &Components{Config: cfg, Log: opts.Logger}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	reg := opts.Registry
	if reg == nil {
		fs, closeFS, err := OpenFirestore(ctx, cfg.Project, cfg.FirestoreDatabase, cfg.FirestoreEmulator, nil, opts.FirestoreOptions...)
		if err != nil {
			return nil, err
		}
		c.closers = append(c.closers, closeFS)
		reg = store.NewFirestore(fs)
	}
	c.Store = reg
	if opts.Tracer == nil {
		opts.Tracer = otel.GetTracerProvider()
	}
	if opts.Meter == nil {
		opts.Meter = otel.GetMeterProvider()
	}
	// The cleanup messages carry the W3C trace context (bus injects it).
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	ps := opts.PubSub
	if ps == nil {
		var err error
		ps, err = pubsub.NewClientWithConfig(ctx, cfg.Project, &pubsub.ClientConfig{EnableOpenTelemetryTracing: true}, ReconnectOptions()...)
		if err != nil {
			return nil, fmt.Errorf("pubsub client: %w", err)
		}
		c.closers = append(c.closers, ps.Close)
	}
	computeHTTP := opts.ComputeHTTP
	if computeHTTP == nil {
		// Client spans for every Compute call: an instrumented transport.
		base, err := ComputeTransport(ctx, cfg.ComputeEndpoint)
		if err != nil {
			return nil, err
		}
		computeHTTP = &http.Client{Transport: otelhttp.NewTransport(base, otelhttp.WithTracerProvider(opts.Tracer))}
	}
	compute, err := gce.New(ctx, gce.Config{Endpoint: cfg.ComputeEndpoint}, option.WithHTTPClient(computeHTTP))
	if err != nil {
		return nil, fmt.Errorf("compute client: %w", err)
	}
	c.closers = append(c.closers, compute.Close)

	pub := bus.NewPublisher(ps, cfg.CleanupTopic, bus.Options{Timeout: PublishTimeout})
	c.closers = append(c.closers, func() error { pub.Stop(); return nil })
	policy := cfg.Policy()
	prices, err := cfg.Prices()
	if err != nil {
		return nil, err
	}
	judge := &cleanup.Judge{Store: reg, Tolerance: cfg.FailureTolerance, Now: opts.Now}
	c.Scheduler = &cleanup.Scheduler{Store: reg, Publisher: pub, Policy: policy, Now: opts.Now}
	registered, err := opts.Meter.Meter("github.com/snapsweep/snapsweep/ingest").Int64Counter("snapsweep.snapshots.registered",
		metric.WithUnit("{snapshot}"), metric.WithDescription("Snapshots newly registered from snapshot.created events."))
	if err != nil {
		return nil, err
	}
	proc := &ingest.Processor{Store: reg, Scheduler: c.Scheduler, Policy: policy, Judge: judge, Now: opts.Now, Registered: registered}
	hostname, _ := os.Hostname()
	c.Engine = cleanup.NewEngine(cleanup.EngineConfig{
		Store: reg, Compute: compute, Policy: policy, SessionLabel: cfg.SessionLabel, DryRun: cfg.DryRun,
		Rate: cfg.DeleteRate, RateByProject: cfg.DeleteRates(), Concurrency: cfg.DeleteConcurrency, Judge: judge, Now: opts.Now,
		Tracer: opts.Tracer, Meter: opts.Meter, Lease: cfg.DeleteLease,
		// The push deadline bounds each delivery; the engine keeps to it and
		// waits for a delete operation at most this long within it.
		Budget: PushTimeout, OpWait: 6 * time.Second,
		Owner: fmt.Sprintf("%s-%d", hostname, os.Getpid()),
		OnBreakerChange: func(from, to string) {
			c.Log.Warn("compute circuit breaker changed state", "from", from, "to", to)
		},
	})
	topic := cfg.CleanupTopic
	if !strings.HasPrefix(topic, "projects/") {
		topic = "projects/" + cfg.Project + "/topics/" + topic
	}
	checkTopic := func(ctx context.Context) error {
		_, err := ps.TopicAdminClient.GetTopic(ctx, &pubsubpb.GetTopicRequest{Topic: topic})
		return err
	}
	c.Sweeper = sweep.New(sweep.Config{
		Store: reg, Compute: compute, Scheduler: c.Scheduler, Publisher: pub, Policy: policy,
		Projects: cfg.Projects, SessionLabel: cfg.SessionLabel, MaxLive: cfg.MaxLiveSnapshots,
		MaxDeletes: cfg.MaxDeletesPerSweep, AdoptOrphans: cfg.AdoptOrphans, DryRun: cfg.DryRun, StuckAfter: cfg.SweepStuckAfter,
		CheckPublish: checkTopic, Breaker: c.Engine.BreakerState, Now: opts.Now, Meter: opts.Meter, Judge: judge,
		Prices: &prices,
	})
	c.Status = &StatusSource{Store: reg, Prices: prices, Now: opts.Now, Breaker: c.Engine.BreakerState,
		DryRun: cfg.DryRun, Version: opts.Version}
	var guard func(http.Handler) http.Handler
	if acfg := (auth.Config{Audience: cfg.AuthAudience, ServiceAccounts: cfg.AuthServiceAccounts, Meter: opts.Meter}); auth.Enabled(acfg) {
		v, err := auth.New(ctx, acfg, opts.AuthOptions...)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		guard = v.Middleware
	}
	srv, err := handlers.New(handlers.Config{
		Auth:   guard,
		Events: proc, Cleanup: c.Engine, Sweeper: c.Sweeper, Rejects: reg,
		Logger: c.Log, Now: opts.Now, Tracer: opts.Tracer, Meter: opts.Meter,
		PushTimeout: PushTimeout,
		Ready: []handlers.Check{
			{Name: "firestore", Run: reg.Ping},
			{Name: "pubsub", Run: checkTopic},
			{Name: "last-sweep", Run: func(ctx context.Context) error {
				h, err := reg.LatestHealth(ctx, 1)
				if err != nil || len(h) == 0 || h[0].Status != string(sweep.Failing) {
					return err
				}
				return fmt.Errorf("last sweep at %s reported failing checks", h[0].At.Format(time.RFC3339))
			}},
			{Name: "compute", Run: func(ctx context.Context) error {
				var errs []error
				for _, p := range cfg.Projects {
					if err := compute.Ping(ctx, p); err != nil {
						errs = append(errs, fmt.Errorf("%s: %w", p, err))
					}
				}
				return errors.Join(errs...)
			}},
		},
		Status: func(ctx context.Context, session string) (any, error) {
			if session != "" {
				return c.Status.Session(ctx, session)
			}
			return c.Status.Overall(ctx)
		},
	})
	if err != nil {
		return nil, err
	}
	c.Handler = withLogger(c.Log, otelhttp.NewHandler(srv.Routes(), "snapsweep",
		otelhttp.WithTracerProvider(opts.Tracer), otelhttp.WithMeterProvider(opts.Meter),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path })))
	return c, nil
}

// Close releases the clients (in reverse order of creation).
func (c *Components) Close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		_ = c.closers[i]()
	}
	c.closers = nil
}

// NewLogger is the service's logger: JSON in Cloud Logging's field names at
// cfg's level.
func NewLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	return telemetry.NewLogger(w, lvl, cfg.Project)
}

// Deadlines of one push delivery (docs/operations.md, "Outages"). A push
// whose work cannot finish is answered 503 within PushTimeout plus the
// engine's 3 s reserve for recording what happened: at most 13 s, well
// inside the 60 s ack deadline, so an outage never holds push slots.
const (
	PushTimeout    = 10 * time.Second
	PublishTimeout = 5 * time.Second
)

// Shutdown: Cloud Run sends SIGTERM and kills 10 s later. Requests still in
// flight drainCancel after SIGTERM have their context cancelled, so that
// their dependency calls end and they are answered 503 (within the engine's
// 3 s reserve) before drainTimeout.
const (
	drainCancel  = 5 * time.Second
	drainTimeout = 9 * time.Second
)

// ReconnectDialOptions make a gRPC connection come back quickly after an
// outage: reconnect attempts back off from 100 ms to at most 1 s (gRPC's
// default grows to 120 s, which kept /ready failing 23 s after Firestore
// returned), and a keepalive ping notices a connection that went silent.
// The ping interval stays at a minute: servers answer more frequent pings
// with GOAWAY too_many_pings.
func ReconnectDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 10 * time.Second}),
	}
}

// ReconnectOptions are ReconnectDialOptions as client options.
func ReconnectOptions() []option.ClientOption {
	var out []option.ClientOption
	for _, o := range ReconnectDialOptions() {
		out = append(out, option.WithGRPCDialOption(o))
	}
	return out
}

// OpenFirestore opens the Firestore client of project and database, with
// the reconnect options and extra dial options (the operator commands'
// waits). When emulator is not empty the connection to it is dialed here,
// as the client library would, so that the caller's configuration decides
// and not only the process environment. Close the client with the func.
func OpenFirestore(ctx context.Context, project, database, emulator string, dial []grpc.DialOption, extra ...option.ClientOption) (*firestore.Client, func() error, error) {
	dial = append(ReconnectDialOptions(), dial...)
	var opts []option.ClientOption
	closeConn := func() error { return nil }
	if emulator != "" {
		conn, err := grpc.NewClient(emulator, append(dial,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(emulatorOwner{}))...)
		if err != nil {
			return nil, nil, fmt.Errorf("firestore emulator %s: %w", emulator, err)
		}
		closeConn = conn.Close
		opts = append(opts, option.WithGRPCConn(conn))
	} else {
		for _, d := range dial {
			opts = append(opts, option.WithGRPCDialOption(d))
		}
	}
	c, err := firestore.NewClientWithDatabase(ctx, project, database, append(opts, extra...)...)
	if err != nil {
		_ = closeConn()
		return nil, nil, fmt.Errorf("firestore client: %w", err)
	}
	return c, func() error {
		err := c.Close()
		_ = closeConn()
		return err
	}, nil
}

// EmulatorCredentials are the credentials the Firestore emulator expects
// (the client library sends the same when it dials the emulator itself).
func EmulatorCredentials() credentials.PerRPCCredentials { return emulatorOwner{} }

type emulatorOwner struct{}

func (emulatorOwner) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer owner"}, nil
}
func (emulatorOwner) RequireTransportSecurity() bool { return false }

// ComputeTransport is the transport of the Compute API at endpoint: none
// of credentials where gce.NoCredentials says so, else Application Default
// Credentials with the compute scope.
func ComputeTransport(ctx context.Context, endpoint string) (http.RoundTripper, error) {
	if gce.NoCredentials(endpoint) {
		return http.DefaultTransport, nil
	}
	hc, _, err := htransport.NewClient(ctx, option.WithScopes("https://www.googleapis.com/auth/compute"))
	if err != nil {
		return nil, fmt.Errorf("compute credentials: %w", err)
	}
	return hc.Transport, nil
}

// withLogger puts the logger in every request's context.
func withLogger(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(telemetry.WithLogger(r.Context(), log)))
	})
}

// Service is an unstarted snapsweep service: its components and a listener.
type Service struct {
	*Components
	lis net.Listener
}

// New builds the components and listens on opts.Listener or cfg.Port (so
// that a test can read the address); it does not serve until Run.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Service, error) {
	c, err := NewComponents(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	s := &Service{Components: c, lis: opts.Listener}
	if s.lis == nil {
		s.lis, err = net.Listen("tcp", fmt.Sprintf(":%d", cfg.Port))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	return s, nil
}

// Addr is the address the service listens on.
func (s *Service) Addr() string { return s.lis.Addr().String() }

// Run serves until ctx ends, then stops accepting, lets in-flight requests
// finish, and returns within Cloud Run's 10 s grace period.
func (s *Service) Run(ctx context.Context) error {
	// Requests outlive ctx (the signal) by up to drainCancel.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	hs := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.lis) }()
	s.Log.Info("snapsweep serving", "addr", s.Addr(), "version", s.Status.Version, "dryRun", s.Config.DryRun,
		"projects", s.Config.Projects)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.Log.Info("shutting down: draining in-flight requests")
	stop := time.AfterFunc(drainCancel, func() {
		s.Log.Warn("shutting down: cancelling the requests still in flight; they are answered 503")
		cancelRequests()
	})
	defer stop.Stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: requests still unanswered after %s: %w", drainTimeout, err)
	}
	return nil
}
