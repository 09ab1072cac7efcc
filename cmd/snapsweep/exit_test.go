package main

import (
	"io"
	"strings"
	"testing"

	"github.com/snapsweep/snapsweep/ops"
)

// TestExitCodeRule: 0 ok, 1 failure, 2 usage or configuration, for every
// command, whether cobra or the command finds the problem. None of these
// reach a registry: they fail before, or need none.
func TestExitCodeRule(t *testing.T) {
	t.Parallel()
	deps := ops.DefaultDeps()
	deps.Lookup = func(k string) (string, bool) {
		v, ok := map[string]string{"GOOGLE_CLOUD_PROJECT": "my-project"}[k]
		return v, ok
	}
	deps.Terminal = func(io.Writer) bool { return false }
	cases := []struct {
		args []string
		code int
		// say is a part of the error (or, for 0, of stdout) the user reads.
		say string
	}{
		{[]string{"version"}, 0, "snapsweep dev"},
		{[]string{"version", "-o", "yaml"}, 0, "version: dev"},
		{[]string{"--help"}, 0, "Available Commands"},
		{[]string{"serve", "--help"}, 0, "--delete-rate float"},
		{[]string{"completion", "bash"}, 0, "bash completion"},
		{[]string{"snapshots", "list", "--help"}, 0, "Examples:"},

		{nil, 2, "missing command"},
		{[]string{"nosuch"}, 2, `unknown command "nosuch" for "snapsweep"`},
		{[]string{"snapshot"}, 2, "did you mean snapshots?"},
		{[]string{"snapshots"}, 2, "missing command; its commands: list"},
		{[]string{"snapshots", "lst"}, 2, `unknown command "lst" for "snapsweep snapshots"; did you mean list?`},
		{[]string{"sessions", "shwo"}, 2, "did you mean show?"},
		{[]string{"completion", "tcsh"}, 2, "its commands: bash, fish, powershell, zsh"},
		{[]string{"version", "extra"}, 2, "usage: snapsweep version"},
		{[]string{"version", "-o", "xml"}, 2, "want table, json or yaml"},
		{[]string{"serve", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"serve", "extra"}, 2, "usage: snapsweep serve"},
		{[]string{"serve", "--delete-rate", "fast", "--snapshot-ttl", "soon"}, 2, `--delete-rate="fast": want a number`},
		{[]string{"sessions", "show"}, 2, "accepts 1 arg(s), received 0; usage: snapsweep sessions show SESSION"},
		{[]string{"sessions", "show", "BAD ID!"}, 2, "not a valid session id"},
		{[]string{"sessions", "list", "--limit", "0"}, 2, "--limit must be positive"},
		{[]string{"sessions", "list", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"sessions", "list", "--timeout", "0s"}, 2, "--timeout 0s: must be positive"},
		{[]string{"snapshots", "list", "--session", "Wave 1!"}, 2, "not a valid session id"},
		{[]string{"snapshots", "list", "--session", "wave-1", "--task", ""}, 2, "--task"},
		{[]string{"snapshots", "list", "-o", "xml"}, 2, "want table, json or yaml"},
		{[]string{"snapshots", "list", "--state", "sleeping"}, 2, "want one of"},
		{[]string{"cleanup"}, 2, "missing command"},
		{[]string{"cleanup", "session"}, 2, "missing --session"},
		{[]string{"cleanup", "task", "--session", "s1"}, 2, "missing --task"},
		{[]string{"cleanup", "task", "--session", "s1", "--task", "bad\x01id"}, 2, "not a valid task id"},
		{[]string{"cleanup", "session", "--session", "Bad Id"}, 2, "not a valid session id"},
		{[]string{"hold"}, 2, "usage: snapsweep hold PROJECT/NAME"},
		{[]string{"hold", "not-a-key", "--reason", "x"}, 2, "want PROJECT/NAME"},
		{[]string{"hold", "my-project/snap-1"}, 2, "--reason is required"},
		{[]string{"release"}, 2, "usage: snapsweep release PROJECT/NAME"},
		{[]string{"rejected", "list", "extra"}, 2, "usage: snapsweep rejected list"},
		{[]string{"health", "--last", "0"}, 2, "--last must be positive"},
		{[]string{"health", "--url", "https://x.example.com"}, 2, "https"},
		{[]string{"sweep", "--url", "ftp://x"}, 2, "want the service's base URL"},
		{[]string{"orphans", "--projects", "Bad_Project"}, 2, `--projects: "Bad_Project" is not a valid project id`},
		{[]string{"publish", "nosuch-event"}, 2, "unknown event"},
		{[]string{"demo", "--bogus"}, 2, "unknown flag: --bogus"},
		{[]string{"fake-compute", "--bogus"}, 2, "unknown flag: --bogus"},

		// Failures that are not usage errors: a service that answers 503.
		{[]string{"health", "--url", "http://127.0.0.1:9", "--timeout", "5s"}, 1, "127.0.0.1:9"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			r := runCLI(t, deps, c.args...)
			if r.Code != c.code {
				t.Fatalf("exit code %d, want %d (err %v)\nstdout:\n%.500s\nstderr:\n%.500s", r.Code, c.code, r.Err, r.Stdout, r.Stderr)
			}
			got := r.Stdout
			if r.Err != nil {
				got = r.Err.Error()
			}
			if !strings.Contains(got, c.say) {
				t.Errorf("output does not say %q:\n%.800s", c.say, got)
			}
		})
	}
}
