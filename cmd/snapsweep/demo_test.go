package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/snapsweep/snapsweep/internal/demo"
	"github.com/snapsweep/snapsweep/ops"
)

// noEnv is an environment without FIRESTORE_EMULATOR_HOST: the demo's
// registry is in memory (TestMain sets the variable for the process).
func noEnv(string) (string, bool) { return "", false }

// TestDemoCommandJSON runs `snapsweep demo -o json` as main would: standard
// output is the JSON report alone, progress goes to standard error, and
// usage errors exit 2.
func TestDemoCommandJSON(t *testing.T) {
	t.Parallel()
	deps := ops.DefaultDeps()
	deps.Lookup = noEnv
	deps.Terminal = func(io.Writer) bool { return false }
	run := func(args ...string) (string, string, error) {
		root := newRootCommand(deps)
		var out, errOut bytes.Buffer
		root.SetArgs(args)
		root.SetOut(&out)
		root.SetErr(&errOut)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		err := root.ExecuteContext(ctx)
		return out.String(), errOut.String(), err
	}
	stdout, stderr, err := run("demo", "--sessions", "1", "--tasks", "4", "--seed", "3", "-o", "json", "--log-file", "none")
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, stderr)
	}
	var rep demo.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stdout is not the JSON report: %v\n%s", err, stdout)
	}
	if !rep.Verified || rep.Registered == 0 || rep.Seed != 3 || rep.Sessions != 1 {
		t.Errorf("report: %+v", rep)
	}
	if !strings.Contains(stderr, "registered") {
		t.Errorf("no progress on stderr:\n%s", stderr)
	}
	for _, args := range [][]string{{"demo", "--sessions", "0"}, {"demo", "-o", "yaml"}, {"demo", "--bogus"}} {
		_, _, err := run(args...)
		var ce *ops.ConfigError
		if !errors.As(err, &ce) {
			t.Errorf("%v: got %v, want a usage error (exit code 2)", args, err)
		}
	}
}
