package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/ops/opstest"
)

// What the operator commands do is tested beside them, in package ops;
// here: the whole command tree, its formatting and exit codes.

// newCLIEnv is a project on the emulators for the whole command tree.
func newCLIEnv(t *testing.T) *opstest.Env { return opstest.New(t, newRootCommand) }

// runCLI runs `snapsweep args...` on the whole tree, as main would.
func runCLI(t *testing.T, deps ops.Deps, args ...string) opstest.Result {
	t.Helper()
	return opstest.Run(t, newRootCommand(deps), deps, args...)
}

// TestCLICommandTree: every operator command documents itself with
// examples and -o, completion works, and missing configuration is a usage
// error (exit code 2).
func TestCLICommandTree(t *testing.T) {
	t.Parallel()
	deps := ops.DefaultDeps()
	deps.Lookup = func(string) (string, bool) { return "", false }
	root := newRootCommand(deps)
	var walk func(c *cobra.Command)
	leaves := 0
	walk = func(c *cobra.Command) {
		if c.HasSubCommands() {
			for _, s := range c.Commands() {
				walk(s)
			}
			return
		}
		if !c.Runnable() || c.Parent() == nil {
			return
		}
		top := c
		for top.Parent() != root {
			top = top.Parent()
		}
		switch top.Name() {
		case "serve", "fake-compute", "publish", "completion", "help":
			return
		}
		leaves++
		if c.Example == "" {
			t.Errorf("%s has no examples in --help", c.CommandPath())
		}
		if c.Flags().Lookup("output") == nil && top.Name() != "demo" {
			t.Errorf("%s has no -o/--output", c.CommandPath())
		}
	}
	walk(root)
	if leaves < 11 {
		t.Errorf("found %d operator commands, want at least 11", leaves)
	}
	r := runCLI(t, deps, "completion", "bash")
	if r.Code != 0 || !strings.Contains(r.Stdout, "bash completion") {
		t.Errorf("completion bash: %v\n%.200s", r.Err, r.Stdout)
	}
	r = runCLI(t, deps, "snapshots", "list")
	if r.Code != 2 || !strings.Contains(r.Err.Error(), "GOOGLE_CLOUD_PROJECT") {
		t.Errorf("no project: exit %d, %v; want 2 naming GOOGLE_CLOUD_PROJECT", r.Code, r.Err)
	}
	r = runCLI(t, deps, "snapshots", "list", "--help")
	if r.Code != 0 || !strings.Contains(r.Stdout, "Examples:") {
		t.Errorf("--help: %v\n%s", r.Err, r.Stdout)
	}
}
