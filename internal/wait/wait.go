// Package wait is the one context-aware sleep of snapsweep: the cleanup
// engine's waits (quota, backoff), the demo and the push simulator use it.
// It owns nothing else.
package wait

import (
	"context"
	"time"
)

// Sleep waits d or until ctx ends, whichever is first, and returns ctx's
// error when ctx ended first (also when d <= 0 and ctx is already done).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
