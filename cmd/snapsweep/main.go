// Command snapsweep is the snapsweep service and its operator tools: `serve`
// runs the Cloud Run service; the other subcommands talk to a running
// service or to its registry.
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/snapsweep/snapsweep/ops"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is stamped in at build time (-ldflags "-X main.version=...").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := realMain(ctx, os.Args[1:])
	stop()
	os.Exit(report(os.Stderr, err))
}

func realMain(ctx context.Context, args []string) error {
	return ops.Execute(ctx, rootCommand(), args, ops.IsTerminal)
}

// The exit-code rule of the whole CLI, in one place:
//
//	0  the command did what it was asked
//	1  it failed (an unknown session, a failing health report, a registry
//	   that did not answer in time, ...)
//	2  the command line or the configuration is wrong: unknown commands,
//	   flags or arguments, missing arguments, invalid ids, bad settings
//
// Every error cobra returns before a command runs is a usage error;
// commands mark their own with ops.UsageError (ops.ConfigError).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitCode maps a command's error to its exit code.
func exitCode(err error) int {
	var ce *ops.ConfigError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ce):
		return exitUsage
	}
	return exitFailure
}

// report prints err (if any) the way the exit code reads, and returns the
// code.
func report(w io.Writer, err error) int {
	code := exitCode(err)
	switch code {
	case exitOK:
	case exitUsage:
		fmt.Fprintln(w, err)
	default:
		fmt.Fprintln(w, "snapsweep:", err)
	}
	return code
}
