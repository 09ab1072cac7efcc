package store

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestClassifyTransientAnswers: what Firestore answers during and right
// after an outage is unavailable (answer 503, let Pub/Sub redeliver);
// a request that is itself wrong is not.
func TestClassifyTransientAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), true},
		{"deadline", status.Error(codes.DeadlineExceeded, "context deadline exceeded"), true},
		{"closed transaction after a restart", status.Error(codes.InvalidArgument, "Transaction is invalid or closed"), true},
		{"invalid argument", status.Error(codes.InvalidArgument, "Document name is invalid"), false},
		{"permission", status.Error(codes.PermissionDenied, "no"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := errors.Is(classify("op", tc.err), ErrUnavailable); got != tc.want {
				t.Errorf("classify(%v) unavailable = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
