package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/gce/gcefake"
)

// fakeComputeCommand serves the in-process Compute fake on a port, for
// local runs without a GCP account. Besides the Compute REST paths it
// offers POST /fake/snapshots to create a snapshot to clean up.
func fakeComputeCommand() *cobra.Command {
	var addr string
	var latency time.Duration
	var quota int
	cmd := &cobra.Command{
		Use:   "fake-compute",
		Short: "Serve a fake of the Compute Engine snapshots API for local runs and tests",
		Example: `  snapsweep fake-compute --addr 127.0.0.1:8089 &
  curl -X POST localhost:8089/fake/snapshots -d '{"project":"snapsweep-local","name":"snap-1","labels":{"migration-session":"s1"}}'
  SNAPSWEEP_COMPUTE_ENDPOINT=http://127.0.0.1:8089 snapsweep serve`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lis, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			srv := &http.Server{Handler: fakeComputeHandler(gcefake.New(gcefake.Options{Latency: latency, QuotaPerSecond: quota})),
				ReadHeaderTimeout: 10 * time.Second}
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
	cmd.Flags().IntVar(&quota, "quota", 0, "delete calls per second per project before 403 rateLimitExceeded (0: unlimited)")
	return cmd
}

func fakeComputeHandler(f *gcefake.Fake) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/compute/v1/", f)
	mux.HandleFunc("POST /fake/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project string            `json:"project"`
			Name    string            `json:"name"`
			Labels  map[string]string `json:"labels"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Project == "" || req.Name == "" {
			http.Error(w, "want {\"project\",\"name\",\"labels\"}", http.StatusBadRequest)
			return
		}
		f.AddSnapshot(req.Project, req.Name, req.Labels)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /fake/calls", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f.Stats())
	})
	return mux
}
