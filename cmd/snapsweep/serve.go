package main

import (
	"context"
	"os"
	"time"

	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/service"
	"github.com/snapsweep/snapsweep/telemetry"
)

// serveCommand is `snapsweep serve`: the service, configured from its flags
// (config.Flags) and the environment (deps.Lookup).
func serveCommand(deps ops.Deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the snapsweep service (Cloud Run): push endpoints, sweep, probes",
		Example: `  GOOGLE_CLOUD_PROJECT=my-proj snapsweep serve
  snapsweep serve --project my-proj --projects my-proj,other-proj --delete-rate 20`,
		Args: cobra.NoArgs,
	}
	flags := config.Flags(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		cfg, err := config.Load(cmd.Context(), flags, envconfig.LookuperFunc(deps.Lookup))
		if err != nil {
			return &ops.ConfigError{Err: err}
		}
		log := service.NewLogger(os.Stdout, cfg)
		telemetry.RouteLibraryLogs(log)
		ctx := telemetry.WithLogger(cmd.Context(), log)
		shutdown, err := telemetry.Setup(ctx, telemetry.Config{Exporter: cfg.Telemetry, Version: version})
		if err != nil {
			return err
		}
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := shutdown(sctx); err != nil {
				log.Warn("telemetry shutdown", "error", err)
			}
		}()
		srv, err := service.New(ctx, cfg, service.Options{Logger: log, Version: version})
		if err != nil {
			return err
		}
		defer srv.Close()
		return srv.Run(ctx)
	}
	return cmd
}
