// Package config is snapsweep's service configuration: the settings of the
// contract, read from the environment and from flags, validated all at once.
package config

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"regexp"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/pflag"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/lifecycle"
)

// Config holds every setting of the contract. Each field is an environment
// variable and a flag of `snapsweep serve` (the flag wins).
type Config struct {
	Port                int           `env:"PORT, default=8080"`
	Project             string        `env:"GOOGLE_CLOUD_PROJECT"`
	FirestoreEmulator   string        `env:"FIRESTORE_EMULATOR_HOST"`
	PubSubEmulator      string        `env:"PUBSUB_EMULATOR_HOST"`
	FirestoreDatabase   string        `env:"SNAPSWEEP_FIRESTORE_DATABASE, default=(default)"`
	CleanupTopic        string        `env:"SNAPSWEEP_CLEANUP_TOPIC, default=snapshot-cleanup"`
	EventsTopic         string        `env:"SNAPSWEEP_EVENTS_TOPIC, default=migration-events"`
	Projects            []string      `env:"SNAPSWEEP_PROJECTS, default=$GOOGLE_CLOUD_PROJECT"`
	SessionLabel        string        `env:"SNAPSWEEP_SESSION_LABEL, default=migration-session"`
	SnapshotTTL         time.Duration `env:"SNAPSWEEP_SNAPSHOT_TTL, default=72h"`
	FailedRetention     time.Duration `env:"SNAPSWEEP_FAILED_RETENTION, default=168h"`
	MaxLiveSnapshots    int           `env:"SNAPSWEEP_MAX_LIVE_SNAPSHOTS, default=1000"`
	MaxDeletesPerSweep  int           `env:"SNAPSWEEP_MAX_DELETES_PER_SWEEP, default=500"`
	FailureTolerance    float64       `env:"SNAPSWEEP_SESSION_FAILURE_TOLERANCE, default=0.05"`
	DeleteRate          float64       `env:"SNAPSWEEP_DELETE_RATE, default=10"`
	DeleteConcurrency   int           `env:"SNAPSWEEP_DELETE_CONCURRENCY, default=16"`
	DryRun              bool          `env:"SNAPSWEEP_DRY_RUN, default=false"`
	ComputeEndpoint     string        `env:"SNAPSWEEP_COMPUTE_ENDPOINT"`
	AuthAudience        string        `env:"SNAPSWEEP_AUTH_AUDIENCE"`
	AuthServiceAccounts []string      `env:"SNAPSWEEP_AUTH_SERVICE_ACCOUNTS"`
	LogLevel            string        `env:"SNAPSWEEP_LOG_LEVEL, default=info"`
	// AdoptOrphans registers labelled snapshots the registry does not know
	// (found by the sweep); false only reports them.
	AdoptOrphans bool `env:"SNAPSWEEP_ADOPT_ORPHANS, default=true"`
	// Telemetry chooses the exporters: auto (Cloud Run → Google Cloud,
	// OTEL_EXPORTER_OTLP_ENDPOINT → OTLP, else none), gcp, otlp, stdout, none.
	Telemetry string `env:"SNAPSWEEP_TELEMETRY, default=auto"`
	// DeleteLease is how long a cleanup claim holds a snapshot before
	// another delivery may take it over.
	DeleteLease time.Duration `env:"SNAPSWEEP_DELETE_LEASE, default=2m"`
	// SweepStuckAfter is how old a cleanup_pending or deleting record must
	// be before the sweep re-drives it.
	SweepStuckAfter time.Duration `env:"SNAPSWEEP_SWEEP_STUCK_AFTER, default=10m"`
	// MaxClockSkew: events stamped further than this in the future are
	// rejected (future_time).
	MaxClockSkew time.Duration `env:"SNAPSWEEP_MAX_CLOCK_SKEW, default=10m"`
	// OrphanGrace is how old a labelled, unreported snapshot of a known
	// session must be before the sweep adopts it.
	OrphanGrace time.Duration `env:"SNAPSWEEP_ORPHAN_GRACE, default=1h"`
	// MaxRedrives is how often the sweep re-drives a stuck cleanup before
	// the record is failed for an operator.
	MaxRedrives int `env:"SNAPSWEEP_MAX_REDRIVES, default=5"`
}

// Policy returns the lifecycle rules these settings configure; the
// service, the sweep and the operator commands all decide by it.
func (c *Config) Policy() lifecycle.Policy {
	return lifecycle.Policy{TTL: c.SnapshotTTL, FailedRetention: c.FailedRetention, MaxClockSkew: c.MaxClockSkew,
		OrphanGrace: c.OrphanGrace, OrphanTTL: c.SnapshotTTL, MaxRedrives: c.MaxRedrives,
		Projects: events.NewAllowlist(c.Projects)}.WithDefaults()
}

var (
	labelKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	emailRE    = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// Validate reports every bad setting at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(env, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", env, fmt.Sprintf(format, args...)))
	}
	if c.Port < 0 || c.Port > 65535 {
		bad("PORT", "must be 0-65535, got %d", c.Port)
	}
	if c.Project == "" {
		bad("GOOGLE_CLOUD_PROJECT", "is required")
	} else if !events.ValidProjectID(c.Project) {
		bad("GOOGLE_CLOUD_PROJECT", "%q is not a valid project id", c.Project)
	}
	if c.FirestoreDatabase == "" {
		bad("SNAPSWEEP_FIRESTORE_DATABASE", "must not be empty")
	}
	if c.CleanupTopic == "" {
		bad("SNAPSWEEP_CLEANUP_TOPIC", "must not be empty")
	}
	if c.EventsTopic == "" {
		bad("SNAPSWEEP_EVENTS_TOPIC", "must not be empty")
	}
	if len(c.Projects) == 0 {
		bad("SNAPSWEEP_PROJECTS", "is required (defaults to GOOGLE_CLOUD_PROJECT)")
	}
	for _, p := range c.Projects {
		if !events.ValidProjectID(p) {
			bad("SNAPSWEEP_PROJECTS", "%q is not a valid project id", p)
		}
	}
	if !labelKeyRE.MatchString(c.SessionLabel) {
		bad("SNAPSWEEP_SESSION_LABEL", "%q is not a valid label key (%s)", c.SessionLabel, labelKeyRE)
	}
	if c.SnapshotTTL <= 0 {
		bad("SNAPSWEEP_SNAPSHOT_TTL", "must be positive, got %s", c.SnapshotTTL)
	}
	if c.FailedRetention <= 0 {
		bad("SNAPSWEEP_FAILED_RETENTION", "must be positive, got %s", c.FailedRetention)
	}
	if c.MaxLiveSnapshots <= 0 {
		bad("SNAPSWEEP_MAX_LIVE_SNAPSHOTS", "must be positive, got %d", c.MaxLiveSnapshots)
	}
	if c.MaxDeletesPerSweep <= 0 {
		bad("SNAPSWEEP_MAX_DELETES_PER_SWEEP", "must be positive, got %d", c.MaxDeletesPerSweep)
	}
	if c.FailureTolerance < 0 || c.FailureTolerance > 1 {
		bad("SNAPSWEEP_SESSION_FAILURE_TOLERANCE", "must be within [0, 1], got %g", c.FailureTolerance)
	}
	if c.DeleteRate <= 0 {
		bad("SNAPSWEEP_DELETE_RATE", "must be positive, got %g", c.DeleteRate)
	}
	if c.DeleteConcurrency <= 0 {
		bad("SNAPSWEEP_DELETE_CONCURRENCY", "must be positive, got %d", c.DeleteConcurrency)
	}
	if c.ComputeEndpoint != "" {
		u, err := url.Parse(c.ComputeEndpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("SNAPSWEEP_COMPUTE_ENDPOINT", "%q is not an http(s) URL", c.ComputeEndpoint)
		}
	}
	switch {
	case c.AuthAudience != "" && len(c.AuthServiceAccounts) == 0:
		bad("SNAPSWEEP_AUTH_SERVICE_ACCOUNTS", "is required when SNAPSWEEP_AUTH_AUDIENCE is set")
	case c.AuthAudience == "" && len(c.AuthServiceAccounts) > 0:
		bad("SNAPSWEEP_AUTH_AUDIENCE", "is required when SNAPSWEEP_AUTH_SERVICE_ACCOUNTS is set")
	}
	for _, a := range c.AuthServiceAccounts {
		if !emailRE.MatchString(a) {
			bad("SNAPSWEEP_AUTH_SERVICE_ACCOUNTS", "%q is not an email", a)
		}
	}
	if c.DeleteLease < time.Minute {
		// The engine works on one message for up to 45 s; a shorter lease
		// would let a second delivery take over a claim still at work.
		bad("SNAPSWEEP_DELETE_LEASE", "must be at least 1m (longer than the 45s per-message budget), got %s", c.DeleteLease)
	}
	if c.MaxClockSkew <= 0 {
		bad("SNAPSWEEP_MAX_CLOCK_SKEW", "must be positive, got %s", c.MaxClockSkew)
	}
	if c.OrphanGrace <= 0 {
		bad("SNAPSWEEP_ORPHAN_GRACE", "must be positive, got %s", c.OrphanGrace)
	}
	if c.MaxRedrives <= 0 {
		bad("SNAPSWEEP_MAX_REDRIVES", "must be positive, got %d", c.MaxRedrives)
	}
	if c.SweepStuckAfter < c.DeleteLease {
		bad("SNAPSWEEP_SWEEP_STUCK_AFTER", "must be at least SNAPSWEEP_DELETE_LEASE (%s), got %s", c.DeleteLease, c.SweepStuckAfter)
	}
	switch strings.ToLower(c.Telemetry) {
	case "auto", "gcp", "otlp", "stdout", "none":
	default:
		bad("SNAPSWEEP_TELEMETRY", "must be auto, gcp, otlp, stdout or none, got %q", c.Telemetry)
	}
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("SNAPSWEEP_LOG_LEVEL", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	return errors.Join(errs...)
}

// FlagName is the flag of an environment variable: SNAPSWEEP_DELETE_RATE is
// --delete-rate, GOOGLE_CLOUD_PROJECT is --project.
func FlagName(env string) string {
	switch env {
	case "GOOGLE_CLOUD_PROJECT":
		return "project"
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(env, "SNAPSWEEP_")), "_", "-")
}

// envNames lists the environment variables of Config's fields.
func envNames() []string {
	var out []string
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("env")
		if tag == "" {
			continue
		}
		out = append(out, strings.TrimSpace(strings.Split(tag, ",")[0]))
	}
	return out
}

// Flags registers one flag per setting on fs and returns a lookuper of the
// flags the user set. Flags are strings parsed like the environment, so a
// flag and its variable accept the same text.
func Flags(fs *pflag.FlagSet) envconfig.Lookuper {
	vals := map[string]*string{}
	for _, env := range envNames() {
		vals[env] = fs.String(FlagName(env), "", "overrides $"+env)
	}
	return envconfig.LookuperFunc(func(key string) (string, bool) {
		p, ok := vals[key]
		if !ok || !fs.Changed(FlagName(key)) {
			return "", false
		}
		return *p, true
	})
}

// Load reads the configuration from the lookupers (earlier ones win) and
// validates it. Parse and validation problems come back together.
func Load(ctx context.Context, lookupers ...envconfig.Lookuper) (*Config, error) {
	var c Config
	if err := envconfig.ProcessWith(ctx, &envconfig.Config{
		Target:   &c,
		Lookuper: envconfig.MultiLookuper(lookupers...),
	}); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	return &c, nil
}
