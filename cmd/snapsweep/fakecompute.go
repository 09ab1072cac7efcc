package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/gce/gcefake"
)

// fakeComputeCommand serves gcefake, the in-process Compute fake, on a port for local runs
// without a GCP account: the Compute REST paths and gcefake's admin endpoints under /fake/.
// Everything it does is gcefake's; this command only maps flags to its options.
func fakeComputeCommand() *cobra.Command {
	var (
		addr                 string
		latency, callLatency time.Duration
		quota                int
		failRate             float64
		failCode             int
		failReason           string
		inUseEvery, inUseN   int
		seed                 uint64
	)
	cmd := &cobra.Command{
		Use:   "fake-compute",
		Short: "Serve a fake of the Compute Engine snapshots API for local runs and tests",
		Long: `Serve a fake of the Compute Engine snapshots API for local runs and tests.

Rate quotas are counted as Compute counts them: per project and quota group, in
synchronized wall-clock minutes (a project that reaches its limit at 10:00:15
gets more at 10:01:00).

Admin endpoints (not part of the Compute API):
` + gcefake.AdminPaths,
		Example: `  snapsweep fake-compute --addr 127.0.0.1:8089 &
  curl -X POST localhost:8089/fake/snapshots -d '{"project":"snapsweep-local","name":"snap-1","labels":{"migration-session":"s1"}}'
  SNAPSWEEP_COMPUTE_ENDPOINT=http://127.0.0.1:8089 snapsweep serve

  # 30 % of all calls answer 503, at most 300 deletes per minute per project:
  snapsweep fake-compute --fail-rate 0.3 --fail-code 503 --quota 300
  # 60 deletes a minute in project a only, at run time:
  curl -X POST localhost:8089/fake/quota -d '{"project":"a","group":"writes","perMinute":60}'
  # clear the faults at run time:
  curl -X POST localhost:8089/fake/faults -d '{"failRate":0,"quota":0}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var bad []error
			if quota < 0 {
				bad = append(bad, fmt.Errorf("--quota must not be negative, got %d", quota))
			}
			if inUseEvery < 0 || inUseN < 0 {
				bad = append(bad, fmt.Errorf("--in-use-every and --in-use-n must not be negative, got %d and %d", inUseEvery, inUseN))
			}
			fake := gcefake.New(gcefake.Options{Latency: latency, CallLatency: callLatency, Seed: seed,
				Quota: map[string]int{gcefake.GroupWrites: quota}, InUseEvery: inUseEvery, InUseTimes: inUseN})
			if err := fake.SetFaults(gcefake.Faults{FailRate: &failRate, FailCode: &failCode, FailReason: &failReason}); err != nil {
				bad = append(bad, fmt.Errorf("--fail-rate, --fail-code, --fail-reason: %w", err))
			}
			if len(bad) > 0 {
				return errors.Join(bad...)
			}
			lis, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			srv := &http.Server{Handler: fake.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "{\"severity\":\"INFO\",\"message\":\"fake compute serving\",\"addr\":%q}\n", lis.Addr().String())
			if err := srv.Serve(lis); err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8089", "listen address")
	cmd.Flags().DurationVar(&latency, "latency", 500*time.Millisecond, "how long a delete operation runs")
	cmd.Flags().DurationVar(&callLatency, "call-latency", 0, "added to every Compute API call")
	cmd.Flags().IntVar(&quota, "quota", 0, "delete calls per wall-clock minute per project before 403 rateLimitExceeded (0: unlimited)")
	cmd.Flags().Float64Var(&failRate, "fail-rate", 0, "share of all Compute API calls that fail with --fail-code (0-1)")
	cmd.Flags().IntVar(&failCode, "fail-code", http.StatusServiceUnavailable, "HTTP status of the injected random failures")
	cmd.Flags().StringVar(&failReason, "fail-reason", "", "error reason of the injected failures (default: the usual one for --fail-code)")
	cmd.Flags().IntVar(&inUseEvery, "in-use-every", 0, "every K-th snapshot created is in use (0: none)")
	cmd.Flags().IntVar(&inUseN, "in-use-n", 3, "how many deletes of such a snapshot fail with resourceInUseByAnotherResource")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the random fault injection")
	return cmd
}
