package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/ops"
)

func rootCommand() *cobra.Command { return newRootCommand(ops.DefaultDeps()) }

// newRootCommand builds the command tree; the operator commands and the
// demo reach the outside world through deps (tests inject their own).
func newRootCommand(deps ops.Deps) *cobra.Command {
	return ops.Root(version, deps, serveCommand(deps), fakeComputeCommand(), publishCommand(deps), demoCommand(deps), versionCommand())
}

// versionCommand is `snapsweep version`.
func versionCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print the version of snapsweep and the Go it was built with",
		Example: "  snapsweep version\n  snapsweep version -o json",
		Args:    cobra.NoArgs,
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		v := struct {
			Version string `json:"version"`
			Go      string `json:"go"`
			Module  string `json:"module,omitempty"`
		}{Version: version, Go: runtime.Version()}
		if bi, ok := debug.ReadBuildInfo(); ok {
			v.Module = bi.Main.Path
			if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				// go install …@version stamps the module version.
				v.Version = bi.Main.Version
			}
		}
		switch output {
		case "json":
			return ops.WriteJSON(cmd.OutOrStdout(), v)
		case "yaml":
			return ops.WriteYAML(cmd.OutOrStdout(), v)
		case "table":
			fmt.Fprintf(cmd.OutOrStdout(), "snapsweep %s (%s)\n", v.Version, v.Go)
			return nil
		}
		return ops.UsageError(cmd, "--output %q: want table, json or yaml", output)
	}
	return cmd
}
