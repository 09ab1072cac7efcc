package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/snapsweep/snapsweep/internal/demo"
	"github.com/snapsweep/snapsweep/ops"
)

// demoCommand is `snapsweep demo` (package demo runs it).
func demoCommand(deps ops.Deps) *cobra.Command {
	opts := demo.Options{Faults: demo.DefaultFaults()}
	var output, logFile string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run snapsweep end to end in this process: no network, no credentials, no gcloud",
		Long: `Run the real service in this process against an in-memory registry, an
in-process Pub/Sub (pstest, with a push bridge) and a fake Compute API with
realistic latency and faults (503s, snapshots in use, a delete quota). Simulated
migration sessions report their snapshots through the job-side reporter; some
tasks fail, some keep running, some events arrive twice or out of order, one
snapshot carries another session's label, and two messages can never be
processed. The demo shows progress, waits until everything settled, runs a
sweep and prints a report checked against what the fake Compute API saw.

With FIRESTORE_EMULATOR_HOST set, the registry is the Firestore emulator
(project demo-project), so the operator commands can read it. The service's
own logs go to a file (--log-file), never to the terminal.`,
		Example: `  go run ./cmd/snapsweep demo
  snapsweep demo --sessions 8 --tasks 40 --seed 7
  snapsweep demo -o json | jq .latency
  snapsweep demo --serve    # then: curl -s localhost:8080/status | jq .counts`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case output != "table" && output != "json":
				return ops.UsageError(cmd, "--output %q: want table or json", output)
			case opts.Sessions < 1 || opts.Sessions > 50:
				return ops.UsageError(cmd, "--sessions must be 1-50")
			case opts.Tasks < 1 || opts.Tasks > 500:
				return ops.UsageError(cmd, "--tasks must be 1-500")
			}
			opts.JSON = output == "json"
			opts.Out, opts.Progress = cmd.OutOrStdout(), cmd.ErrOrStderr()
			opts.TTY = deps.Terminal(opts.Progress)
			if f, ok := opts.Progress.(*os.File); ok && opts.TTY {
				if w, _, err := term.GetSize(int(f.Fd())); err == nil {
					opts.Width = w
				}
			}
			opts.Lookup = deps.Lookup
			switch logFile {
			case "":
				f, err := os.CreateTemp("", "snapsweep-demo-*.log")
				if err != nil {
					return fmt.Errorf("service log file: %w", err)
				}
				defer f.Close()
				opts.LogOut, opts.LogPath = f, f.Name()
			case "-", "none":
				opts.LogOut = io.Discard
			default:
				f, err := os.Create(logFile)
				if err != nil {
					return &ops.ConfigError{Err: fmt.Errorf("--log-file: %w", err)}
				}
				defer f.Close()
				opts.LogOut, opts.LogPath = f, logFile
			}
			_, err := demo.Run(cmd.Context(), opts)
			return err
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&opts.Sessions, "sessions", 4, "migration sessions to simulate (the last one keeps running)")
	fl.IntVar(&opts.Tasks, "tasks", 20, "tasks (VMs) per session, each taking 1-3 snapshots")
	fl.Uint64Var(&opts.Seed, "seed", 1, "seed of the simulation: the same seed plays the same sessions")
	fl.BoolVar(&opts.Serve, "serve", false, "keep the service running after the report (on --addr) for curl and the operator commands")
	fl.StringVar(&opts.Addr, "addr", "127.0.0.1:8080", "listen address with --serve")
	fl.StringVarP(&output, "output", "o", "table", "report format: table or json")
	fl.StringVar(&logFile, "log-file", "", `file for the service's JSON logs (default: a new file in the temp dir; "none" discards them)`)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return ops.UsageError(c, "%v", err) })
	return cmd
}
