package main

import (
	"github.com/spf13/cobra"
)

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "snapsweep",
		Short:         "Keep disk migrations from leaking Compute Engine snapshots",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), fakeComputeCommand(), publishCommand())
	return root
}
