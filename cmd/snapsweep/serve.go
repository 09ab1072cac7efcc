package main

import (
	"context"
	"encoding/json"
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
	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/api/option"
	htransport "google.golang.org/api/transport/http"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/snapsweep/snapsweep/auth"
	"github.com/snapsweep/snapsweep/bus"
	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/handlers"
	"github.com/snapsweep/snapsweep/ingest"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
	"github.com/snapsweep/snapsweep/telemetry"
)

func serveCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the snapsweep service (Cloud Run): push endpoints, sweep, probes",
		Example: `  GOOGLE_CLOUD_PROJECT=my-proj snapsweep serve
  snapsweep serve --project my-proj --projects my-proj,other-proj --delete-rate 20`,
		Args: cobra.NoArgs,
	}
	flags := config.Flags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := config.Load(cmd.Context(), flags, envconfig.OsLookuper())
		if err != nil {
			return &configError{err}
		}
		log := newLogger(os.Stdout, cfg)
		telemetry.RouteLibraryLogs(log)
		ctx := telemetry.WithLogger(cmd.Context(), log)
		shutdown, err := telemetry.Setup(ctx, telemetry.Config{Exporter: cfg.Telemetry, Version: version})
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				log.Warn("telemetry shutdown", "error", err)
			}
		}()
		srv, err := NewService(ctx, cfg, ServiceOptions{Logger: log})
		if err != nil {
			return err
		}
		defer srv.Close()
		return srv.Run(ctx)
	}
	return cmd
}

func newLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	return telemetry.NewLogger(w, lvl, cfg.Project)
}

// ServiceOptions carries what tests and the demo inject.
type ServiceOptions struct {
	// Registry replaces the Firestore registry (the demo's store.Memory).
	Registry store.Registry
	// PubSub replaces the Pub/Sub client (the demo's pstest); the caller
	// keeps and closes it.
	PubSub *pubsub.Client
	Logger *slog.Logger
	// Listener, when set, is used instead of listening on cfg.Port.
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
}

// Service is an unstarted snapsweep service with everything it owns.
type Service struct {
	cfg     *config.Config
	log     *slog.Logger
	lis     net.Listener
	handler http.Handler
	closers []func() error

	Store   store.Registry
	Engine  *cleanup.Engine
	Sweeper *sweep.Sweeper
	// prices price the storage figures of /status and the sweep; now is
	// the service's clock.
	prices cost.Prices
	now    func() time.Time
}

// NewService builds the service from cfg: clients, registry, engine and
// handlers. It listens (so that a test can read the address) but does not
// serve until Run.
func NewService(ctx context.Context, cfg *config.Config, opts ServiceOptions) (_ *Service, err error) {
	s := &Service{cfg: cfg, log: opts.Logger, now: opts.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	reg := opts.Registry
	if reg == nil {
		fsOpts := reconnectOptions()
		if cfg.FirestoreEmulator != "" {
			// Against the emulator the client dials a connection of its own
			// and ignores dial options: dial it here, with the same options.
			conn, err := grpc.NewClient(cfg.FirestoreEmulator, append(reconnectDialOptions(),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithPerRPCCredentials(emulatorOwner{}))...)
			if err != nil {
				return nil, fmt.Errorf("firestore emulator connection: %w", err)
			}
			s.closers = append(s.closers, conn.Close)
			fsOpts = []option.ClientOption{option.WithGRPCConn(conn)}
		}
		fs, err := firestore.NewClientWithDatabase(ctx, cfg.Project, cfg.FirestoreDatabase, append(fsOpts, opts.FirestoreOptions...)...)
		if err != nil {
			return nil, fmt.Errorf("firestore client: %w", err)
		}
		s.closers = append(s.closers, fs.Close)
		reg = store.NewFirestore(fs)
	}
	s.Store = reg
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
		ps, err = pubsub.NewClientWithConfig(ctx, cfg.Project, &pubsub.ClientConfig{EnableOpenTelemetryTracing: true}, reconnectOptions()...)
		if err != nil {
			return nil, fmt.Errorf("pubsub client: %w", err)
		}
		s.closers = append(s.closers, ps.Close)
	}
	computeHTTP := opts.ComputeHTTP
	if computeHTTP == nil {
		// Client spans for every Compute call: an instrumented transport,
		// authenticated with ADC unless the endpoint is plain http.
		base := http.DefaultTransport
		if !strings.HasPrefix(cfg.ComputeEndpoint, "http://") {
			hc, _, err := htransport.NewClient(ctx, option.WithScopes("https://www.googleapis.com/auth/compute"))
			if err != nil {
				return nil, fmt.Errorf("compute credentials: %w", err)
			}
			base = hc.Transport
		}
		computeHTTP = &http.Client{Transport: otelhttp.NewTransport(base, otelhttp.WithTracerProvider(opts.Tracer))}
	}
	gopts := []option.ClientOption{option.WithHTTPClient(computeHTTP)}
	compute, err := gce.New(ctx, gce.Config{Endpoint: cfg.ComputeEndpoint}, gopts...)
	if err != nil {
		return nil, fmt.Errorf("compute client: %w", err)
	}
	s.closers = append(s.closers, compute.Close)

	pub := bus.NewPublisher(ps, cfg.CleanupTopic, bus.Options{Timeout: publishTimeout})
	s.closers = append(s.closers, func() error { pub.Stop(); return nil })
	policy := cfg.Policy()
	if s.prices, err = cfg.Prices(); err != nil {
		return nil, err
	}
	judge := &cleanup.Judge{Store: reg, Tolerance: cfg.FailureTolerance, Now: opts.Now}
	sched := &cleanup.Scheduler{Store: reg, Publisher: pub, Policy: policy, Now: opts.Now}
	registered, err := opts.Meter.Meter("github.com/snapsweep/snapsweep/ingest").Int64Counter("snapsweep.snapshots.registered",
		metric.WithUnit("{snapshot}"), metric.WithDescription("Snapshots newly registered from snapshot.created events."))
	if err != nil {
		return nil, err
	}
	proc := &ingest.Processor{Store: reg, Scheduler: sched, Policy: policy, Judge: judge, Now: opts.Now, Registered: registered}
	hostname, _ := os.Hostname()
	s.Engine = cleanup.NewEngine(cleanup.EngineConfig{
		Store: reg, Compute: compute, Policy: policy, SessionLabel: cfg.SessionLabel, DryRun: cfg.DryRun,
		Rate: cfg.DeleteRate, RateByProject: cfg.DeleteRates(), Concurrency: cfg.DeleteConcurrency, Judge: judge, Now: opts.Now,
		Tracer: opts.Tracer, Meter: opts.Meter, Lease: cfg.DeleteLease,
		// The push deadline bounds each delivery; the engine keeps to it and
		// waits for a delete operation at most this long within it.
		Budget: pushTimeout, OpWait: 6 * time.Second,
		Owner: fmt.Sprintf("%s-%d", hostname, os.Getpid()),
		OnBreakerChange: func(from, to string) {
			s.log.Warn("compute circuit breaker changed state", "from", from, "to", to)
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
	s.Sweeper = sweep.New(sweep.Config{
		Store: reg, Compute: compute, Scheduler: sched, Publisher: pub, Policy: policy,
		Projects: cfg.Projects, SessionLabel: cfg.SessionLabel, MaxLive: cfg.MaxLiveSnapshots,
		MaxDeletes: cfg.MaxDeletesPerSweep, AdoptOrphans: cfg.AdoptOrphans, DryRun: cfg.DryRun, StuckAfter: cfg.SweepStuckAfter,
		CheckPublish: checkTopic, Breaker: s.Engine.BreakerState, Now: opts.Now, Meter: opts.Meter, Judge: judge,
		Prices: &s.prices,
	})
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
		Events: proc, Cleanup: s.Engine, Sweeper: s.Sweeper, Rejects: reg,
		Logger: s.log, Now: opts.Now, Tracer: opts.Tracer, Meter: opts.Meter,
		PushTimeout: pushTimeout,
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
				return s.sessionStatus(ctx, session)
			}
			return s.status(ctx)
		},
	})
	if err != nil {
		return nil, err
	}
	s.handler = withLogger(s.log, otelhttp.NewHandler(srv.Routes(), "snapsweep",
		otelhttp.WithTracerProvider(opts.Tracer), otelhttp.WithMeterProvider(opts.Meter),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path })))
	s.lis = opts.Listener
	if s.lis == nil {
		s.lis, err = net.Listen("tcp", fmt.Sprintf(":%d", cfg.Port))
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
	}
	return s, nil
}

// Deadlines of one push delivery (docs/operations.md, "Outages"). A push
// whose work cannot finish is answered 503 within pushTimeout plus the
// engine's 3 s reserve for recording what happened: at most 13 s, well
// inside the 60 s ack deadline, so an outage never holds push slots.
const (
	pushTimeout    = 10 * time.Second
	publishTimeout = 5 * time.Second
)

// Shutdown: Cloud Run sends SIGTERM and kills 10 s later. Requests still in
// flight drainCancel after SIGTERM have their context cancelled, so that
// their dependency calls end and they are answered 503 (within the engine's
// 3 s reserve) before drainTimeout.
const (
	drainCancel  = 5 * time.Second
	drainTimeout = 9 * time.Second
)

// reconnectDialOptions make a gRPC connection come back quickly after an
// outage: reconnect attempts back off from 100 ms to at most 1 s (gRPC's
// default grows to 120 s, which kept /ready failing 23 s after Firestore
// returned), and a keepalive ping notices a connection that went silent.
// The ping interval stays at a minute: servers answer more frequent pings
// with GOAWAY too_many_pings.
func reconnectDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: time.Minute, Timeout: 10 * time.Second}),
	}
}

func reconnectOptions() []option.ClientOption {
	var out []option.ClientOption
	for _, o := range reconnectDialOptions() {
		out = append(out, option.WithGRPCDialOption(o))
	}
	return out
}

// withLogger puts the logger in every request's context.
func withLogger(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r.WithContext(telemetry.WithLogger(r.Context(), log)))
	})
}

// Addr is the address the service listens on.
func (s *Service) Addr() string { return s.lis.Addr().String() }

// Handler is the service's HTTP handler (for in-process tests).
func (s *Service) Handler() http.Handler { return s.handler }

// Run serves until ctx ends, then stops accepting, lets in-flight requests
// finish, and returns within Cloud Run's 10 s grace period.
func (s *Service) Run(ctx context.Context) error {
	// Requests outlive ctx (the signal) by up to drainCancel.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	hs := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return reqCtx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.lis) }()
	s.log.Info("snapsweep serving", "addr", s.Addr(), "version", version, "dryRun", s.cfg.DryRun,
		"projects", s.cfg.Projects)
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down: draining in-flight requests")
	stop := time.AfterFunc(drainCancel, func() {
		s.log.Warn("shutting down: cancelling the requests still in flight; they are answered 503")
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

// Close releases the clients (in reverse order of creation).
func (s *Service) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i]()
	}
	s.closers = nil
}

// statusReport is GET /status.
type statusReport struct {
	Counts   map[store.State]int64 `json:"counts"`
	Sessions []store.Session       `json:"sessions"`
	Breaker  string                `json:"breaker"`
	DryRun   bool                  `json:"dryRun"`
	Health   *statusHealth         `json:"lastHealth,omitempty"`
	Version  string                `json:"version"`
	// Storage is what the cleanup is worth, overall and per project
	// (package cost); per session: /status?session=ID.
	Storage *statusStorage `json:"storage,omitempty"`
}

// statusStorage is the cost account of /status.
type statusStorage struct {
	Currency string                   `json:"currency"`
	Prices   string                   `json:"prices"`
	Overall  cost.Figures             `json:"overall"`
	Projects map[string]*cost.Figures `json:"projects"`
	Missing  []cost.MissingPrice      `json:"missingPrices,omitempty"`
	Savings  string                   `json:"savings"`
	Bounds   []string                 `json:"bounds"`
	// Partial is set when the registry held more than statusMaxRecords
	// records: `snapsweep report` reads them all.
	Partial bool `json:"partial,omitempty"`
}

// statusMaxRecords bounds the records one GET /status reads for its cost
// figures (one Firestore read each).
const statusMaxRecords = 20000

func (s *Service) storage(ctx context.Context, f cost.Filter) (*cost.Report, bool, error) {
	recs, _, partial, err := cost.Load(ctx, s.Store, f)
	if err != nil {
		return nil, false, err
	}
	now := time.Now
	if s.now != nil {
		now = s.now
	}
	return cost.Compute(recs, s.prices, now()), partial, nil
}

// statusHealth is the latest stored health report, the report itself as
// JSON (the registry stores it as text).
type statusHealth struct {
	At     time.Time       `json:"at"`
	Status string          `json:"status"`
	Report json.RawMessage `json:"report,omitempty"`
}

func newStatusHealth(h store.HealthRecord) *statusHealth {
	out := &statusHealth{At: h.At, Status: h.Status}
	if json.Valid([]byte(h.Report)) {
		out.Report = json.RawMessage(h.Report)
	} else if h.Report != "" {
		// Never hide a stored report, even one that is not JSON.
		out.Report, _ = json.Marshal(h.Report)
	}
	return out
}

func (s *Service) status(ctx context.Context) (statusReport, error) {
	counts, err := s.Store.CountByState(ctx)
	if err != nil {
		return statusReport{}, err
	}
	sessions, err := s.Store.ListSessions(ctx, 50)
	if err != nil {
		return statusReport{}, err
	}
	rep := statusReport{Counts: counts, Sessions: sessions, Breaker: s.Engine.BreakerState(), DryRun: s.cfg.DryRun, Version: version}
	if h, err := s.Store.LatestHealth(ctx, 1); err == nil && len(h) > 0 {
		rep.Health = newStatusHealth(h[0])
	}
	c, partial, err := s.storage(ctx, cost.Filter{Max: statusMaxRecords})
	if err != nil {
		return statusReport{}, err
	}
	rep.Storage = &statusStorage{Currency: c.Currency, Prices: c.Prices, Overall: c.Overall, Projects: c.Projects,
		Missing: c.Missing, Savings: cost.Line(c.Overall, c.Currency), Bounds: c.Bounds, Partial: partial}
	return rep, nil
}

// sessionStatus is GET /status?session=ID: the session's record (with its
// cleanup outcome) and its snapshots counted by state.
type sessionStatus struct {
	Session *store.Session        `json:"session"`
	Counts  map[store.State]int64 `json:"counts"`
	// Storage is what the session's cleanup is worth; Retained the cost of
	// keeping each of its retained snapshots until its retention ends.
	Storage  *cost.Figures       `json:"storage"`
	Retained []cost.Retention    `json:"retained,omitempty"`
	Missing  []cost.MissingPrice `json:"missingPrices,omitempty"`
	Savings  string              `json:"savings"`
}

func (s *Service) sessionStatus(ctx context.Context, id string) (sessionStatus, error) {
	sess, err := s.Store.GetSession(ctx, id)
	if err != nil {
		return sessionStatus{}, err
	}
	out := sessionStatus{Session: sess, Counts: map[store.State]int64{}}
	for _, st := range store.States() {
		n, err := s.Store.CountSnapshots(ctx, store.Query{SessionID: id, States: []store.State{st}})
		if err != nil {
			return sessionStatus{}, err
		}
		out.Counts[st] = n
	}
	c, _, err := s.storage(ctx, cost.Filter{SessionID: id})
	if err != nil {
		return sessionStatus{}, err
	}
	out.Storage, out.Retained, out.Missing = c.Sessions[id], c.Retained, c.Missing
	if out.Storage == nil {
		out.Storage = &cost.Figures{Kept: map[cost.Reason]cost.Amount{}}
	}
	out.Savings = cost.Line(*out.Storage, c.Currency)
	return out, nil
}
