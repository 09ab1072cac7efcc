package main

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapsweep/snapsweep/ops/opstest"
	"github.com/snapsweep/snapsweep/store"
)

// TestREADMEFirstHour runs the README's first-hour walk-through, line by
// line, against a registry seeded like the demo's, and checks every exit
// code (0 unless the line's comment says "exit N").
func TestREADMEFirstHour(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(b), "<!-- first-hour -->")
	block, _, ok2 := strings.Cut(block, "<!-- /first-hour -->")
	if !ok || !ok2 {
		t.Fatal("README.md has no first-hour walk-through")
	}
	e := newCLIEnv(t)
	seedDemoLike(t, e)
	exitRE := regexp.MustCompile(`\bexit (\d)\b`)
	ran := 0
	for _, line := range strings.Split(block, "\n") {
		cmdline, comment, _ := strings.Cut(line, "#")
		if !strings.HasPrefix(cmdline, "snapsweep ") {
			continue
		}
		want := 0
		if m := exitRE.FindStringSubmatch(comment); m != nil {
			want, _ = strconv.Atoi(m[1])
		}
		args := shellWords(t, strings.TrimPrefix(strings.TrimSpace(cmdline), "snapsweep "))
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "demo-project/", e.Project+"/")
		}
		r := e.Run(t, args...)
		if r.Code != want {
			t.Errorf("%s: exit %d, want %d (err %v)\nstdout:\n%s\nstderr:\n%s", strings.TrimSpace(cmdline), r.Code, want, r.Err, r.Stdout, r.Stderr)
		}
		ran++
	}
	if ran < 8 {
		t.Errorf("ran %d lines of the walk-through, want at least 8", ran)
	}
}

// seedDemoLike registers what the demo leaves behind for wave-1: a failed
// task with a retained snapshot, a succeeded one with a deleted snapshot.
func seedDemoLike(t *testing.T, e *opstest.Env) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Microsecond)
	if _, err := e.Reg.CreateSession(context.Background(), &store.Session{SessionID: "wave-1", State: store.SessionRunning, StartedAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e.Task(t, "wave-1", "vm-01", store.TaskFailed, now.Add(-30*time.Minute))
	e.Task(t, "wave-1", "vm-02", store.TaskSucceeded, now.Add(-30*time.Minute))
	e.Put(t,
		store.Snapshot{Name: "wave-1-vm-01-boot", SessionID: "wave-1", TaskID: "vm-01", State: store.Retained, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(100 * time.Hour)},
		store.Snapshot{Name: "wave-1-vm-02-boot", SessionID: "wave-1", TaskID: "vm-02", State: store.Deleted, DeletedBy: "snapsweep", CreatedAt: now.Add(-time.Hour)},
	)
}

// shellWords splits a command line as a shell would for the README's
// simple quoting ('…' and "…").
func shellWords(t *testing.T, s string) []string {
	t.Helper()
	var out []string
	var cur strings.Builder
	var quote rune
	in := false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("unbalanced quote in %q", s)
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}
