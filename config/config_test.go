package config_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/pflag"

	"github.com/snapsweep/snapsweep/config"
)

func TestDefaultsMatchTheContract(t *testing.T) {
	t.Parallel()
	cfg, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{"GOOGLE_CLOUD_PROJECT": "my-project"}))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Config{
		Port: 8080, Project: "my-project", FirestoreDatabase: "(default)", CleanupTopic: "snapshot-cleanup",
		EventsTopic: "migration-events", Projects: []string{"my-project"}, SessionLabel: "migration-session",
		SnapshotTTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, MaxLiveSnapshots: 1000, MaxDeletesPerSweep: 500,
		FailureTolerance: 0.05, DeleteRate: 10, DeleteConcurrency: 16, LogLevel: "info", AdoptOrphans: true, Telemetry: "auto",
		DeleteLease: 2 * time.Minute, SweepStuckAfter: 10 * time.Minute,
		MaxClockSkew: 10 * time.Minute, OrphanGrace: time.Hour, MaxRedrives: 5,
	}
	if diff := cmp.Diff(&want, cfg); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestEveryBadSettingIsNamedAtOnce(t *testing.T) {
	t.Parallel()
	_, err := config.Load(context.Background(), envconfig.MapLookuper(map[string]string{
		"SNAPSWEEP_PROJECTS":                  "Bad_Project,ok-project",
		"SNAPSWEEP_SESSION_LABEL":             "Has Spaces",
		"SNAPSWEEP_SNAPSHOT_TTL":              "-1h",
		"SNAPSWEEP_SESSION_FAILURE_TOLERANCE": "1.5",
		"SNAPSWEEP_DELETE_RATE":               "0",
		"SNAPSWEEP_DELETE_CONCURRENCY":        "0",
		"SNAPSWEEP_COMPUTE_ENDPOINT":          "ftp://x",
		"SNAPSWEEP_AUTH_AUDIENCE":             "https://svc",
		"SNAPSWEEP_MAX_DELETES_PER_SWEEP":     "0",
	}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, name := range []string{"GOOGLE_CLOUD_PROJECT", "SNAPSWEEP_PROJECTS", "SNAPSWEEP_SESSION_LABEL", "SNAPSWEEP_SNAPSHOT_TTL",
		"SNAPSWEEP_SESSION_FAILURE_TOLERANCE", "SNAPSWEEP_DELETE_RATE", "SNAPSWEEP_DELETE_CONCURRENCY",
		"SNAPSWEEP_COMPUTE_ENDPOINT", "SNAPSWEEP_AUTH_SERVICE_ACCOUNTS", "SNAPSWEEP_MAX_DELETES_PER_SWEEP"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

func TestFlagsOverrideTheEnvironment(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	flags := config.Flags(fs)
	if err := fs.Parse([]string{"--project", "flag-project", "--delete-rate", "25", "--dry-run"}); err != nil {
		t.Fatal(err)
	}
	env := envconfig.MapLookuper(map[string]string{"GOOGLE_CLOUD_PROJECT": "env-project", "SNAPSWEEP_DELETE_RATE": "5", "SNAPSWEEP_DELETE_CONCURRENCY": "4"})
	cfg, err := config.Load(context.Background(), flags, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Project != "flag-project" || cfg.DeleteRate != 25 || !cfg.DryRun || cfg.DeleteConcurrency != 4 {
		t.Errorf("got project %q rate %g dryRun %v concurrency %d; want flag-project, 25, true, 4 (from env)",
			cfg.Project, cfg.DeleteRate, cfg.DryRun, cfg.DeleteConcurrency)
	}
	if got := config.FlagName("SNAPSWEEP_MAX_DELETES_PER_SWEEP"); got != "max-deletes-per-sweep" {
		t.Errorf("FlagName = %q", got)
	}
}

// TestUnparsableAndOutOfRangeSettingsInOneMessage: every value that does
// not parse and every value out of range is in the one error, named the
// way the user gave it (the variable, or the flag), with the value and
// what is expected; a missing project is reported with them.
func TestUnparsableAndOutOfRangeSettingsInOneMessage(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		env   map[string]string
		flags []string
		want  []string
	}{
		{
			name: "environment",
			env: map[string]string{"SNAPSWEEP_DELETE_RATE": "fast", "SNAPSWEEP_SNAPSHOT_TTL": "soon",
				"SNAPSWEEP_SESSION_FAILURE_TOLERANCE": "1.5"},
			want: []string{
				"invalid configuration:",
				`SNAPSWEEP_SNAPSHOT_TTL="soon": want a duration, e.g. 90s, 10m or 72h`,
				`SNAPSWEEP_DELETE_RATE="fast": want a number, e.g. 0.05 or 10`,
				"GOOGLE_CLOUD_PROJECT: is required",
				"SNAPSWEEP_PROJECTS: is required (defaults to GOOGLE_CLOUD_PROJECT)",
				"SNAPSWEEP_SESSION_FAILURE_TOLERANCE: must be within [0, 1], got 1.5",
			},
		},
		{
			name:  "flags",
			env:   map[string]string{"GOOGLE_CLOUD_PROJECT": "my-project", "SNAPSWEEP_MAX_REDRIVES": "many"},
			flags: []string{"--delete-rate", "fast", "--snapshot-ttl=soon", "--session-failure-tolerance", "-1", "--dry-run=maybe"},
			want: []string{
				"invalid configuration:",
				`--snapshot-ttl="soon": want a duration, e.g. 90s, 10m or 72h`,
				`--delete-rate="fast": want a number, e.g. 0.05 or 10`,
				`--dry-run="maybe": want true or false`,
				`SNAPSWEEP_MAX_REDRIVES="many": want a whole number, e.g. 500`,
				"--session-failure-tolerance: must be within [0, 1], got -1",
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			flags := config.Flags(fs)
			if err := fs.Parse(c.flags); err != nil {
				t.Fatalf("flags: %v", err)
			}
			_, err := config.Load(context.Background(), flags, envconfig.MapLookuper(c.env))
			if err == nil {
				t.Fatal("want an error")
			}
			if diff := cmp.Diff(c.want, strings.Split(err.Error(), "\n")); diff != "" {
				t.Errorf("message (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFlagsDescribeThemselves: every flag of serve has a meaning, names its
// variable, has a type other than plain text where the setting is not text,
// and shows the default.
func TestFlagsDescribeThemselves(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	config.Flags(fs)
	type shown struct{ Type, Default string }
	got := map[string]shown{}
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Usage == "" || !strings.Contains(f.Usage, "(env ") {
			t.Errorf("--%s: usage %q lacks a meaning or its variable", f.Name, f.Usage)
		}
		got[f.Name] = shown{f.Value.Type(), f.DefValue}
	})
	want := map[string]shown{
		"delete-rate":  {"float", "10"},
		"snapshot-ttl": {"duration", "72h"},
		"dry-run":      {"bool", "false"},
		"port":         {"int", "8080"},
		"projects":     {"strings", "--project"},
		"project":      {"string", ""},
	}
	for name, w := range want {
		if diff := cmp.Diff(w, got[name]); diff != "" {
			t.Errorf("--%s (-want +got):\n%s", name, diff)
		}
	}
	if len(got) != len(config.Settings()) {
		t.Errorf("%d flags for %d settings", len(got), len(config.Settings()))
	}
	usage := fs.FlagUsages()
	for _, line := range []string{"--delete-rate float", "(default 10)", "--snapshot-ttl duration", "(default 72h)"} {
		if !strings.Contains(usage, line) {
			t.Errorf("help lacks %q:\n%s", line, usage)
		}
	}
}

func TestDeleteRateByProject(t *testing.T) {
	t.Parallel()
	base := map[string]string{"GOOGLE_CLOUD_PROJECT": "proj-a", "SNAPSWEEP_PROJECTS": "proj-a,proj-b"}
	tests := []struct {
		name    string
		value   string
		want    map[string]float64
		wantErr []string // parts of the error, each naming what the user typed
	}{
		{name: "unset", value: "", want: map[string]float64{}},
		{name: "two projects", value: "proj-a=5, proj-b=20.5", want: map[string]float64{"proj-a": 5, "proj-b": 20.5}},
		{name: "trailing comma", value: "proj-a=5,", want: map[string]float64{"proj-a": 5}},
		{name: "not a pair", value: "proj-a", wantErr: []string{`SNAPSWEEP_DELETE_RATE_BY_PROJECT: "proj-a" is not project=rate`}},
		{name: "no project", value: "=5", wantErr: []string{`"=5" is not project=rate`}},
		{name: "bad rate", value: "proj-a=fast", wantErr: []string{`"proj-a=fast": the rate "fast" is not a positive number`}},
		{name: "zero rate", value: "proj-b=0", wantErr: []string{`"proj-b=0": the rate "0" is not a positive number`}},
		{name: "not allowlisted", value: "proj-c=5", wantErr: []string{`"proj-c=5": project "proj-c" is not in SNAPSWEEP_PROJECTS`}},
		{name: "twice", value: "proj-a=5,proj-a=6", wantErr: []string{`"proj-a=6": project "proj-a" is named more than once`}},
		{name: "all at once, with other errors", value: "proj-a=x,proj-c=1", wantErr: []string{`"proj-a=x"`, `"proj-c=1"`, "SNAPSWEEP_DELETE_RATE:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{"SNAPSWEEP_DELETE_RATE_BY_PROJECT": tc.value}
			for k, v := range base {
				env[k] = v
			}
			if len(tc.wantErr) > 2 {
				env["SNAPSWEEP_DELETE_RATE"] = "-1"
			}
			cfg, err := config.Load(context.Background(), envconfig.MapLookuper(env))
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("no error for %q", tc.value)
				}
				for _, part := range tc.wantErr {
					if !strings.Contains(err.Error(), part) {
						t.Errorf("error does not say %q:\n%v", part, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, cfg.DeleteRates()); diff != "" {
				t.Errorf("DeleteRates (-want +got):\n%s", diff)
			}
		})
	}
}

// TestFlagsForDeclaresOnlyTheNamedSettings: a command's shared settings
// are flags generated from Config (name, type, meaning, default), set
// flags win over the environment, and Value reads one setting the way Load
// does, defaults and "$NAME" defaults included.
func TestFlagsForDeclaresOnlyTheNamedSettings(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("sweep", pflag.ContinueOnError)
	flags := config.FlagsFor(fs, "GOOGLE_CLOUD_PROJECT", "SNAPSWEEP_PROJECTS", "SNAPSWEEP_COMPUTE_ENDPOINT")
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	if diff := cmp.Diff([]string{"compute-endpoint", "project", "projects"}, names); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
	if err := fs.Parse([]string{"--project", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	env := envconfig.MapLookuper(map[string]string{"GOOGLE_CLOUD_PROJECT": "from-env", "SNAPSWEEP_COMPUTE_ENDPOINT": "http://127.0.0.1:1"})
	got := map[string]string{}
	for _, e := range []string{"GOOGLE_CLOUD_PROJECT", "SNAPSWEEP_PROJECTS", "SNAPSWEEP_COMPUTE_ENDPOINT", "SNAPSWEEP_FIRESTORE_DATABASE", "SNAPSWEEP_AUTH_AUDIENCE"} {
		got[e] = config.Value(e, flags, env)
	}
	want := map[string]string{
		"GOOGLE_CLOUD_PROJECT":         "from-flag",
		"SNAPSWEEP_PROJECTS":           "from-flag", // default $GOOGLE_CLOUD_PROJECT
		"SNAPSWEEP_COMPUTE_ENDPOINT":   "http://127.0.0.1:1",
		"SNAPSWEEP_FIRESTORE_DATABASE": "(default)",
		"SNAPSWEEP_AUTH_AUDIENCE":      "",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Value (-want +got):\n%s", diff)
	}
	defer func() {
		if recover() == nil {
			t.Error("FlagsFor accepted a name that is not a setting")
		}
	}()
	config.FlagsFor(pflag.NewFlagSet("x", pflag.ContinueOnError), "SNAPSWEEP_NO_SUCH")
}
