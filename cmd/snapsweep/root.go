package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

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
	root.AddCommand(serveCommand(), fakeComputeCommand(), publishCommand(), demoCommand(deps), versionCommand())
	root.AddCommand(opsCommands(deps)...)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError(c, "%v", err) })
	return root
}

// strictTree makes every command of the tree refuse what it does not
// know: a command with subcommands and nothing to run itself answers an
// unknown subcommand (`snapshots lst`, `completion tcsh`) or none at all
// with a usage error, and every argument error is a usage error with the
// command's usage line.
func strictTree(c *cobra.Command) {
	if c.SuggestionsMinimumDistance <= 0 {
		c.SuggestionsMinimumDistance = 2
	}
	if c.HasSubCommands() && c.Run == nil && c.RunE == nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return nil
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf("; did you mean %s?", strings.Join(s, " or "))
			}
			return usageError(cmd, "%s; its commands: %s", msg, subcommandNames(cmd))
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return usageError(cmd, "missing command; its commands: %s", subcommandNames(cmd))
		}
	} else if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			err := args(cmd, a)
			var ce *configError
			if err != nil && !errors.As(err, &ce) {
				return usageError(cmd, "%v; usage: %s", err, cmd.UseLine())
			}
			return err
		}
	}
	for _, s := range c.Commands() {
		strictTree(s)
	}
}

func subcommandNames(c *cobra.Command) string {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return strings.Join(names, ", ")
}

// execute runs the command line args on root. It applies the command's
// --timeout, tells a terminal what a slow command waits for, explains a
// command that ran out of time, and turns every error cobra raises before
// a command runs (unknown command or flag, bad arguments) into a usage
// error, so that exitCode is the CLI's one exit-code rule.
// terminal says whether stderr is a terminal.
func execute(ctx context.Context, root *cobra.Command, args []string, terminal func(io.Writer) bool) error {
	ran := false
	w := newWaits()
	var timeout time.Duration
	var tctx context.Context
	var stopNotice func()
	var cancel context.CancelFunc = func() {}
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		ran = true
		ctx := withWaits(cmd.Context(), w)
		if f := cmd.Flags().Lookup("timeout"); f != nil {
			d, err := cmd.Flags().GetDuration("timeout")
			if err != nil || d <= 0 {
				return usageError(cmd, "--timeout %s: must be positive", f.Value)
			}
			timeout = d
			ctx, cancel = context.WithTimeout(ctx, d)
			tctx = ctx
			if terminal(cmd.ErrOrStderr()) {
				stopNotice = w.notice(cmd.ErrOrStderr(), d)
			}
		}
		cmd.SetContext(ctx)
		return nil
	}
	// Cobra adds help and completion when it executes; add them now (after
	// the caller chose the output) so that they are strict too.
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd(args...)
	strictTree(root)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if stopNotice != nil {
		stopNotice()
	}
	timedOut := tctx != nil && errors.Is(tctx.Err(), context.DeadlineExceeded)
	cancel()
	var ce *configError
	switch {
	case err == nil:
		return nil
	case !ran && !errors.As(err, &ce):
		return usageError(root, "%v", err)
	case timedOut:
		return w.timedOut(timeout, err)
	}
	return err
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
			return writeJSONTo(cmd.OutOrStdout(), v)
		case "yaml":
			return writeYAMLTo(cmd.OutOrStdout(), v)
		case "table":
			fmt.Fprintf(cmd.OutOrStdout(), "snapsweep %s (%s)\n", v.Version, v.Go)
			return nil
		}
		return usageError(cmd, "--output %q: want table, json or yaml", output)
	}
	return cmd
}
