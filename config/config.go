// Package config is snapsweep's service configuration: the settings of the
// contract, read from the environment and from flags, validated all at once.
//
// It owns the settings, their defaults and their validation, and generates
// the commands' flags from them (Flags, FlagsFor); code elsewhere must not
// read the environment for a setting itself.
package config

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/pflag"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/lifecycle"
)

// Config holds every setting of the contract. Each field is an environment
// variable and a flag of `snapsweep serve` (the flag wins).
type Config struct {
	Port                int           `env:"PORT, default=8080" help:"listen port"`
	Project             string        `env:"GOOGLE_CLOUD_PROJECT" help:"project of Firestore and Pub/Sub (required)"`
	FirestoreEmulator   string        `env:"FIRESTORE_EMULATOR_HOST" help:"host:port of the Firestore emulator"`
	PubSubEmulator      string        `env:"PUBSUB_EMULATOR_HOST" help:"host:port of the Pub/Sub emulator"`
	FirestoreDatabase   string        `env:"SNAPSWEEP_FIRESTORE_DATABASE, default=(default)" help:"Firestore database id"`
	CleanupTopic        string        `env:"SNAPSWEEP_CLEANUP_TOPIC, default=snapshot-cleanup" help:"topic for cleanup messages"`
	EventsTopic         string        `env:"SNAPSWEEP_EVENTS_TOPIC, default=migration-events" help:"topic migration jobs publish to"`
	Projects            []string      `env:"SNAPSWEEP_PROJECTS, default=$GOOGLE_CLOUD_PROJECT" help:"comma list of projects whose snapshots may be managed (default: the project)"`
	SessionLabel        string        `env:"SNAPSWEEP_SESSION_LABEL, default=migration-session" help:"ownership label key; its value must equal the session id"`
	SnapshotTTL         time.Duration `env:"SNAPSWEEP_SNAPSHOT_TTL, default=72h" help:"age after which an unfinished task's snapshot is expired"`
	FailedRetention     time.Duration `env:"SNAPSWEEP_FAILED_RETENTION, default=168h" help:"how long a failed task's snapshots are kept"`
	MaxLiveSnapshots    int           `env:"SNAPSWEEP_MAX_LIVE_SNAPSHOTS, default=1000" help:"live snapshots above which the sweep runs emergency cleanup and reports failing"`
	MaxDeletesPerSweep  int           `env:"SNAPSWEEP_MAX_DELETES_PER_SWEEP, default=500" help:"cap on cleanup messages per sweep"`
	FailureTolerance    float64       `env:"SNAPSWEEP_SESSION_FAILURE_TOLERANCE, default=0.05" help:"share of a session's deletions that may fail, 0 to 1"`
	DeleteRate          float64       `env:"SNAPSWEEP_DELETE_RATE, default=10" help:"Compute delete calls per second per project per instance"`
	DeleteConcurrency   int           `env:"SNAPSWEEP_DELETE_CONCURRENCY, default=16" help:"concurrent Compute calls per instance"`
	DryRun              bool          `env:"SNAPSWEEP_DRY_RUN, default=false" help:"do everything but the delete call"`
	ComputeEndpoint     string        `env:"SNAPSWEEP_COMPUTE_ENDPOINT" help:"base URL of the Compute API; plain http:// means no credentials"`
	AuthAudience        string        `env:"SNAPSWEEP_AUTH_AUDIENCE" help:"OIDC audience every push and scheduler request must carry"`
	AuthServiceAccounts []string      `env:"SNAPSWEEP_AUTH_SERVICE_ACCOUNTS" help:"comma list of service accounts allowed to call"`
	LogLevel            string        `env:"SNAPSWEEP_LOG_LEVEL, default=info" help:"debug, info, warn or error"`
	// AdoptOrphans registers labelled snapshots the registry does not know
	// (found by the sweep); false only reports them.
	AdoptOrphans bool `env:"SNAPSWEEP_ADOPT_ORPHANS, default=true" help:"the sweep adopts labelled snapshots of known sessions; false only reports them"`
	// Telemetry chooses the exporters: auto (Cloud Run → Google Cloud,
	// OTEL_EXPORTER_OTLP_ENDPOINT → OTLP, else none), gcp, otlp, stdout, none.
	Telemetry string `env:"SNAPSWEEP_TELEMETRY, default=auto" help:"exporters: auto, gcp, otlp, stdout or none"`
	// DeleteLease is how long a cleanup claim holds a snapshot before
	// another delivery may take it over.
	DeleteLease time.Duration `env:"SNAPSWEEP_DELETE_LEASE, default=2m" help:"how long a cleanup claim holds a snapshot, at least 1m"`
	// SweepStuckAfter is how old a cleanup_pending or deleting record must
	// be before the sweep re-drives it.
	SweepStuckAfter time.Duration `env:"SNAPSWEEP_SWEEP_STUCK_AFTER, default=10m" help:"age after which the sweep re-drives a stuck cleanup, at least the delete lease"`
	// MaxClockSkew: events stamped further than this in the future are
	// rejected (future_time).
	MaxClockSkew time.Duration `env:"SNAPSWEEP_MAX_CLOCK_SKEW, default=10m" help:"events stamped further than this in the future are rejected"`
	// OrphanGrace is how old a labelled, unreported snapshot of a known
	// session must be before the sweep adopts it.
	OrphanGrace time.Duration `env:"SNAPSWEEP_ORPHAN_GRACE, default=1h" help:"age a labelled, unreported snapshot must reach before the sweep adopts it"`
	// MaxRedrives is how often the sweep re-drives a stuck cleanup before
	// the record is failed for an operator.
	MaxRedrives int `env:"SNAPSWEEP_MAX_REDRIVES, default=5" help:"re-drives of a stuck cleanup before the record is failed for an operator"`
	// PriceFile replaces the built-in snapshot storage prices (package
	// cost; docs/operations.md says where the defaults come from).
	PriceFile string `env:"SNAPSWEEP_PRICE_FILE" help:"YAML or JSON price table (per GiB-month by snapshot type and location) replacing the built-in list prices"`
	// DeleteRateByProject overrides DeleteRate for single projects:
	// "a=5,b=20" (DeleteRates parses it).
	DeleteRateByProject string `env:"SNAPSWEEP_DELETE_RATE_BY_PROJECT" help:"per-project overrides of --delete-rate, e.g. a=5,b=20 (projects of --projects)"`
}

// Prices returns the price table: the price file's, or the built-in one.
func (c *Config) Prices() (cost.Prices, error) {
	if c.PriceFile == "" {
		return cost.DefaultPrices(), nil
	}
	return cost.LoadPrices(c.PriceFile)
}

// Policy returns the lifecycle rules these settings configure; the
// service, the sweep and the operator commands all decide by it.
func (c *Config) Policy() lifecycle.Policy {
	return lifecycle.Policy{TTL: c.SnapshotTTL, FailedRetention: c.FailedRetention, MaxClockSkew: c.MaxClockSkew,
		OrphanGrace: c.OrphanGrace, OrphanTTL: c.SnapshotTTL, MaxRedrives: c.MaxRedrives,
		Projects: events.NewAllowlist(c.Projects)}.WithDefaults()
}

// DeleteRates returns the delete rate of every project that has its own
// (SNAPSWEEP_DELETE_RATE_BY_PROJECT); the others run at DeleteRate. Call it
// on a validated Config.
func (c *Config) DeleteRates() map[string]float64 {
	rates, _ := c.parseDeleteRates()
	return rates
}

// parseDeleteRates parses DeleteRateByProject: comma-separated
// project=rate pairs, each project allowlisted and named once, each rate a
// positive number of delete calls per second. Every bad pair is reported,
// quoted as the user typed it.
func (c *Config) parseDeleteRates() (map[string]float64, []string) {
	rates := map[string]float64{}
	var errs []string
	if strings.TrimSpace(c.DeleteRateByProject) == "" {
		return rates, nil
	}
	allowed := map[string]bool{}
	for _, p := range c.Projects {
		allowed[p] = true
	}
	for _, pair := range strings.Split(c.DeleteRateByProject, ",") {
		item := strings.TrimSpace(pair)
		if item == "" {
			continue
		}
		project, text, ok := strings.Cut(item, "=")
		project, text = strings.TrimSpace(project), strings.TrimSpace(text)
		r, err := strconv.ParseFloat(text, 64)
		switch {
		case !ok || project == "":
			errs = append(errs, fmt.Sprintf("%q is not project=rate (e.g. my-project=5)", item))
			continue
		case err != nil || math.IsNaN(r) || math.IsInf(r, 0) || r <= 0:
			errs = append(errs, fmt.Sprintf("%q: the rate %q is not a positive number of delete calls per second", item, text))
			continue
		case !allowed[project]:
			errs = append(errs, fmt.Sprintf("%q: project %q is not in SNAPSWEEP_PROJECTS", item, project))
			continue
		}
		if _, dup := rates[project]; dup {
			errs = append(errs, fmt.Sprintf("%q: project %q is named more than once", item, project))
			continue
		}
		rates[project] = r
	}
	return rates, errs
}

var (
	labelKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
	emailRE    = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)
)

// Validate reports every bad setting at once, each by its environment
// variable.
func (c *Config) Validate() error {
	var errs []error
	for _, p := range c.problems() {
		errs = append(errs, fmt.Errorf("%s: %s", p.env, p.msg))
	}
	return errors.Join(errs...)
}

// problem is one out-of-range setting.
type problem struct{ env, msg string }

// problems lists every out-of-range setting, in field order.
func (c *Config) problems() []problem {
	var errs []problem
	bad := func(env, format string, args ...any) {
		errs = append(errs, problem{env, fmt.Sprintf(format, args...)})
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
	if _, errs := c.parseDeleteRates(); len(errs) > 0 {
		for _, e := range errs {
			bad("SNAPSWEEP_DELETE_RATE_BY_PROJECT", "%s", e)
		}
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
	if c.PriceFile != "" {
		if _, err := cost.LoadPrices(c.PriceFile); err != nil {
			bad("SNAPSWEEP_PRICE_FILE", "%v", err)
		}
	}
	return errs
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

// Setting describes one setting of Config: its variable, default, meaning
// and the kind of value it takes.
type Setting struct {
	Env     string
	Default string // as text; "$NAME" means the value of setting NAME
	Help    string
	Kind    string // int, string, strings, duration, float, bool
	index   int
}

// Settings lists every setting of Config, in field order.
func Settings() []Setting {
	var out []Setting
	t := reflect.TypeFor[Config]()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("env")
		if tag == "" {
			continue
		}
		parts := strings.Split(tag, ",")
		s := Setting{Env: strings.TrimSpace(parts[0]), Help: f.Tag.Get("help"), index: i}
		for _, p := range parts[1:] {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "default="); ok {
				s.Default = v
			}
		}
		switch f.Type {
		case reflect.TypeFor[time.Duration]():
			s.Kind = "duration"
		case reflect.TypeFor[[]string]():
			s.Kind = "strings"
		default:
			switch f.Type.Kind() {
			case reflect.Int:
				s.Kind = "int"
			case reflect.Float64:
				s.Kind = "float"
			case reflect.Bool:
				s.Kind = "bool"
			default:
				s.Kind = "string"
			}
		}
		out = append(out, s)
	}
	return out
}

// expected says what a setting of a kind accepts, for messages.
var expected = map[string]string{
	"int":      "a whole number, e.g. 500",
	"float":    "a number, e.g. 0.05 or 10",
	"duration": "a duration, e.g. 90s, 10m or 72h",
	"bool":     "true or false",
}

// parse converts text to the setting's kind.
func (s Setting) parse(text string) (reflect.Value, error) {
	text = strings.TrimSpace(text)
	switch s.Kind {
	case "int":
		n, err := strconv.Atoi(text)
		return reflect.ValueOf(n), err
	case "float":
		f, err := strconv.ParseFloat(text, 64)
		if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			err = errors.New("not finite")
		}
		return reflect.ValueOf(f), err
	case "duration":
		d, err := time.ParseDuration(text)
		return reflect.ValueOf(d), err
	case "bool":
		b, err := strconv.ParseBool(text)
		return reflect.ValueOf(b), err
	case "strings":
		var out []string
		for _, p := range strings.Split(text, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		return reflect.ValueOf(out), nil
	}
	return reflect.ValueOf(text), nil
}

// flagValue is a flag of `snapsweep serve`: it keeps the text as given, so
// that Load parses a flag exactly like its variable and reports a bad value
// together with every other problem.
type flagValue struct {
	kind string
	text string
}

func (v *flagValue) String() string     { return v.text }
func (v *flagValue) Set(s string) error { v.text = s; return nil }
func (v *flagValue) Type() string       { return v.kind }

// flagLookuper reads the flags the user set and names them as flags.
type flagLookuper struct {
	fs   *pflag.FlagSet
	vals map[string]*flagValue
}

func (l *flagLookuper) Lookup(key string) (string, bool) {
	v, ok := l.vals[key]
	if !ok || !l.fs.Changed(FlagName(key)) {
		return "", false
	}
	return v.text, true
}

// NameOf is how the user named the setting: as a flag.
func (l *flagLookuper) NameOf(key string) string { return "--" + FlagName(key) }

// Flags registers one flag per setting on fs, with its meaning, type and
// default, and returns a lookuper of the flags the user set.
func Flags(fs *pflag.FlagSet) envconfig.Lookuper { return FlagsFor(fs) }

// FlagsFor registers the flags of the named settings only (all of them
// when none is named), generated from Config like Flags: the operator
// commands declare their shared settings (--project, --cleanup-topic,
// --compute-endpoint, ...) with it. It panics on a name that is not a
// setting, a programming error.
func FlagsFor(fs *pflag.FlagSet, envs ...string) envconfig.Lookuper {
	want, unknown := map[string]bool{}, map[string]bool{}
	for _, e := range envs {
		want[e], unknown[e] = true, true
	}
	l := &flagLookuper{fs: fs, vals: map[string]*flagValue{}}
	for _, s := range Settings() {
		if len(want) > 0 && !want[s.Env] {
			continue
		}
		delete(unknown, s.Env)
		v := &flagValue{kind: s.Kind}
		l.vals[s.Env] = v
		f := fs.VarPF(v, FlagName(s.Env), "", s.Help+" (env "+s.Env+")")
		f.DefValue = s.Default
		if ref, ok := strings.CutPrefix(s.Default, "$"); ok {
			f.DefValue = "--" + FlagName(ref)
		}
		if s.Kind == "bool" {
			f.NoOptDefVal = "true"
		}
	}
	for e := range unknown {
		panic(fmt.Sprintf("config.FlagsFor: %s is not a setting", e))
	}
	return l
}

// Value is the text of one setting as Load would read it: from the first
// lookuper that has it (not empty), else its default (a "$NAME" default
// is setting NAME's value). Commands that need one setting before, or
// without, the whole configuration (the registry's project and database)
// read it with Value.
func Value(env string, lookupers ...envconfig.Lookuper) string {
	for _, l := range lookupers {
		if v, ok := l.Lookup(env); ok && strings.TrimSpace(v) != "" {
			return v
		}
	}
	for _, s := range Settings() {
		if s.Env == env {
			if ref, ok := strings.CutPrefix(s.Default, "$"); ok {
				return Value(ref, lookupers...)
			}
			return s.Default
		}
	}
	return ""
}

// FlagLookuper wraps a lookuper of flag values so that Load names its
// settings as flags (--delete-rate, not SNAPSWEEP_DELETE_RATE).
func FlagLookuper(l envconfig.Lookuper) envconfig.Lookuper { return namedLookuper{l} }

type namedLookuper struct{ envconfig.Lookuper }

func (namedLookuper) NameOf(key string) string { return "--" + FlagName(key) }

// Load reads the configuration from the lookupers (earlier ones win) and
// validates it. Every value that does not parse and every value out of
// range comes back in one error, each named the way the user gave it (the
// variable, or the flag), with the value and what is expected.
func Load(ctx context.Context, lookupers ...envconfig.Lookuper) (*Config, error) {
	_ = ctx
	var c Config
	rv := reflect.ValueOf(&c).Elem()
	names := map[string]string{}
	lookup := func(key string) (string, string, bool) {
		for _, l := range lookupers {
			if v, ok := l.Lookup(key); ok {
				name := key
				if n, ok := l.(interface{ NameOf(string) string }); ok {
					name = n.NameOf(key)
				}
				return v, name, true
			}
		}
		return "", key, false
	}
	var errs []error
	failed := map[string]bool{}
	values := map[string]string{}
	for _, s := range Settings() {
		text, name, ok := lookup(s.Env)
		if strings.TrimSpace(text) == "" {
			// An empty variable or flag means the default, as unset.
			ok = false
		}
		names[s.Env] = name
		if !ok {
			text = s.Default
			if ref, isRef := strings.CutPrefix(text, "$"); isRef {
				text = values[ref]
			}
		}
		values[s.Env] = text
		if text == "" && !ok {
			continue
		}
		v, err := s.parse(text)
		if err != nil {
			failed[s.Env] = true
			errs = append(errs, fmt.Errorf("%s=%q: want %s", name, text, expected[s.Kind]))
			continue
		}
		rv.Field(s.index).Set(v)
	}
	for _, p := range c.problems() {
		if failed[p.env] {
			continue
		}
		name := names[p.env]
		if name == "" {
			name = p.env
		}
		errs = append(errs, fmt.Errorf("%s: %s", name, p.msg))
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("invalid configuration:\n%w", errors.Join(errs...))
	}
	return &c, nil
}
