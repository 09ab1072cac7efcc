package handlers

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	grpccodes "google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/store"
)

// TestStatusClassification: every transient failure a dependency can
// give is answered 503 (redeliver later); only the unexpected is 500.
func TestStatusClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"registry unavailable", fmt.Errorf("claim: %w", store.ErrUnavailable), http.StatusServiceUnavailable},
		{"engine retry later", fmt.Errorf("breaker: %w", cleanup.ErrRetryLater), http.StatusServiceUnavailable},
		{"push deadline", fmt.Errorf("apply: %w", context.DeadlineExceeded), http.StatusServiceUnavailable},
		{"shutdown", fmt.Errorf("apply: %w", context.Canceled), http.StatusServiceUnavailable},
		{"publish unavailable", fmt.Errorf("publish cleanup: %w", grpcstatus.Error(grpccodes.Unavailable, "connection refused")), http.StatusServiceUnavailable},
		{"publish deadline", fmt.Errorf("publish cleanup: %w", grpcstatus.Error(grpccodes.DeadlineExceeded, "deadline")), http.StatusServiceUnavailable},
		{"unexpected", fmt.Errorf("boom"), http.StatusInternalServerError},
		{"permission", grpcstatus.Error(grpccodes.PermissionDenied, "no"), http.StatusInternalServerError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := status(tc.err); got != tc.want {
				t.Errorf("status(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}
