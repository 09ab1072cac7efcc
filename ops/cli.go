package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/spf13/cobra"
)

// PubSubFunc opens a Pub/Sub client for a project. The default,
// pubsub.NewClient, honours PUBSUB_EMULATOR_HOST.
type PubSubFunc func(ctx context.Context, project string) (*pubsub.Client, error)

// ConfigError marks an invalid command line or configuration (exit code 2).
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// The exit-code rule of the whole CLI, in one place:
//
//	0  the command did what it was asked
//	1  it failed (an unknown session, a failing health report, a registry
//	   that did not answer in time, ...)
//	2  the command line or the configuration is wrong: unknown commands,
//	   flags or arguments, missing arguments, invalid ids, bad settings
//
// Every error cobra returns before a command runs is a usage error
// (Execute sees to it); commands mark their own with UsageError
// (ConfigError).
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// ExitCode maps a command's error to its exit code.
func ExitCode(err error) int {
	var ce *ConfigError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ce):
		return ExitUsage
	}
	return ExitFailure
}

// Root is the snapsweep command tree: the operator commands and the
// commands of package main (more), with every flag error a usage error.
func Root(version string, deps Deps, more ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:           "snapsweep",
		Short:         "Keep disk migrations from leaking Compute Engine snapshots",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(more...)
	root.AddCommand(Commands(deps)...)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return UsageError(c, "%v", err) })
	return root
}

// UsageError is an invalid command line (exit code 2).
func UsageError(cmd *cobra.Command, format string, args ...any) error {
	return &ConfigError{fmt.Errorf("%s: %s (see %s --help)", cmd.CommandPath(), fmt.Sprintf(format, args...), cmd.CommandPath())}
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
			return UsageError(cmd, "%s; its commands: %s", msg, subcommandNames(cmd))
		}
		c.RunE = func(cmd *cobra.Command, _ []string) error {
			cmd.SetOut(cmd.ErrOrStderr())
			_ = cmd.Help()
			return UsageError(cmd, "missing command; its commands: %s", subcommandNames(cmd))
		}
	} else if args := c.Args; args != nil {
		c.Args = func(cmd *cobra.Command, a []string) error {
			err := args(cmd, a)
			var ce *ConfigError
			if err != nil && !errors.As(err, &ce) {
				return UsageError(cmd, "%v; usage: %s", err, cmd.UseLine())
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

// Execute runs the command line args on root. It applies the command's
// --timeout, tells a terminal what a slow command waits for, explains a
// command that ran out of time, and turns every error cobra raises before
// a command runs (unknown command or flag, bad arguments) into a usage
// error, so that ExitCode is the CLI's one exit-code rule.
// terminal says whether stderr is a terminal.
func Execute(ctx context.Context, root *cobra.Command, args []string, terminal func(io.Writer) bool) error {
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
				return UsageError(cmd, "--timeout %s: must be positive", f.Value)
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
	var ce *ConfigError
	switch {
	case err == nil:
		return nil
	case !ran && !errors.As(err, &ce):
		return UsageError(root, "%v", err)
	case timedOut:
		return w.timedOut(timeout, err)
	}
	return err
}
