package main

import (
	"context"
	"errors"
	"github.com/snapsweep/snapsweep/ops"
	"strings"
	"testing"
)

// TestInvalidConfigurationIsOneErrorWithExitCode2: serve refuses to start,
// naming every bad setting by the flag it was given as, with the error
// main maps to exit code 2.
func TestInvalidConfigurationIsOneErrorWithExitCode2(t *testing.T) {
	t.Parallel()
	err := realMain(context.Background(), []string{"serve", "--project", "Bad Project", "--delete-rate", "-1", "--session-failure-tolerance", "2"})
	var ce *ops.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("got %v, want a configuration error (exit code 2)", err)
	}
	for _, name := range []string{"--project", "--delete-rate", "--session-failure-tolerance"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}
