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
	if err := fs.Parse([]string{"--project", "flag-project", "--delete-rate", "25", "--dry-run", "true"}); err != nil {
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
