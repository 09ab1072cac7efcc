// Command snapsweep is the snapsweep service and its operator tools: `serve`
// runs the Cloud Run service; the other subcommands talk to a running
// service or to its registry.
package main

import (
	"context"
	"errors"
	"fmt"
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
	if err != nil {
		var ce *configError
		if errors.As(err, &ce) {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "snapsweep:", err)
		os.Exit(1)
	}
}

func realMain(ctx context.Context, args []string) error {
	root := rootCommand()
	root.SetArgs(args)
	return root.ExecuteContext(ctx)
}

// configError marks an invalid configuration (exit code 2).
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }
