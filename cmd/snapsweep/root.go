package main

import (
	"github.com/spf13/cobra"
)

func rootCommand() *cobra.Command { return newRootCommand(defaultOpsDeps()) }

// newRootCommand builds the command tree; the operator commands and the
// demo reach the outside world through deps (tests inject their own).
func newRootCommand(deps opsDeps) *cobra.Command {
	root := &cobra.Command{
		Use:           "snapsweep",
		Short:         "Keep disk migrations from leaking Compute Engine snapshots",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), fakeComputeCommand(), publishCommand(), demoCommand(deps))
	root.AddCommand(opsCommands(deps)...)
	return root
}
