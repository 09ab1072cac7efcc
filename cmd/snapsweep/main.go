// Command snapsweep is the snapsweep service and its operator tools: `serve`
// runs the Cloud Run service; the other subcommands talk to a running
// service or to its registry.
//
// Package main parses flags and prints: the service is package service, what
// the operator commands do is package ops, and no decision about a
// snapshot is made here.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/snapsweep/snapsweep/ops"
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

// report prints err (if any) the way the exit code reads, and returns the
// code.
func report(w io.Writer, err error) int {
	code := ops.ExitCode(err)
	switch code {
	case ops.ExitOK:
	case ops.ExitUsage:
		fmt.Fprintln(w, err)
	default:
		fmt.Fprintln(w, "snapsweep:", err)
	}
	return code
}
