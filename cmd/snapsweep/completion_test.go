package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/store"
)

// TestCompletionFromTheRegistry: session ids, task ids, states and snapshot
// keys complete from the registry the commands read.
func TestCompletionFromTheRegistry(t *testing.T) {
	t.Parallel()
	e := newCLIEnv(t)
	now := time.Now().UTC().Truncate(time.Microsecond)
	for _, id := range []string{"wave-1", "wave-2", "other"} {
		if _, err := e.reg.CreateSession(context.Background(), &store.Session{SessionID: id, State: store.SessionRunning, StartedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	e.task(t, "wave-1", "vm-1", store.TaskRunning, now)
	e.task(t, "wave-1", "vm-2", store.TaskSucceeded, now)
	e.put(t, store.Snapshot{Name: "keep-1", SessionID: "wave-1", TaskID: "vm-1", State: store.Active, CreatedAt: now},
		store.Snapshot{Name: "gone-1", SessionID: "wave-1", TaskID: "vm-2", State: store.Deleted, CreatedAt: now})
	complete := func(args ...string) []string {
		t.Helper()
		r := e.run(t, append([]string{"__complete"}, args...)...)
		wantCode(t, strings.Join(args, " "), r, 0)
		var words []string
		for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
			if line != "" && !strings.HasPrefix(line, ":") {
				words = append(words, line)
			}
		}
		return words
	}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"snapshots", "list", "--session", "wave"}, []string{"wave-1", "wave-2"}},
		{[]string{"snapshots", "list", "--session", "wave-1", "--task", ""}, []string{"vm-1", "vm-2"}},
		{[]string{"snapshots", "list", "--state", "active,re"}, []string{"active,retained", "active,refused"}},
		{[]string{"sessions", "show", "oth"}, []string{"other"}},
		{[]string{"cleanup", "task", "--session", "wave-1", "--task", "vm-2"}, []string{"vm-2"}},
		{[]string{"hold", ""}, []string{e.key("keep-1")}},
	}
	for _, tc := range cases {
		got := complete(tc.args...)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("completion of %q (-want +got):\n%s", tc.args, diff)
		}
	}
}
