package lifecycle_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// tableRow renders one transition as docs/state-machine.md lists it.
func tableRow(e lifecycle.Edge) string {
	states := func(ss []store.State) string {
		var out []string
		for _, s := range ss {
			out = append(out, string(s))
		}
		return strings.Join(out, ", ")
	}
	from := states(e.From)
	if e.Create {
		from = strings.TrimSuffix("(none), "+from, ", ")
	}
	return "| " + string(e.Transition) + " | " + from + " | " + states(e.To) + " |"
}

// TestStateMachineDocMatchesTable keeps docs/state-machine.md's transition
// table equal to the one the code enforces.
func TestStateMachineDocMatchesTable(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/state-machine.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile(`(?m)^\| ([a-z-]+) \| ([^|]*) \| ([^|]*) \|`)
	var got []string
	for _, m := range row.FindAllStringSubmatch(string(doc), -1) {
		if m[1] == "transition" || m[1] == "---" {
			continue
		}
		got = append(got, "| "+m[1]+" | "+strings.TrimSpace(m[2])+" | "+strings.TrimSpace(m[3])+" |")
	}
	var want []string
	for _, e := range lifecycle.Table {
		want = append(want, tableRow(e))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/state-machine.md transition table differs from lifecycle.Table (-want +got):\n%s\nwant rows:\n%s",
			diff, strings.Join(want, "\n"))
	}
}

// TestEveryStateIsReachableAndTerminalStatesStay checks the table's shape:
// every state can be entered, deleted and vanished are left only by a new
// generation of the name, and only register, adopt and job-deleted create.
func TestEveryStateIsReachableAndTerminalStatesStay(t *testing.T) {
	t.Parallel()
	entered := map[store.State]bool{}
	for _, e := range lifecycle.Table {
		for _, s := range e.To {
			entered[s] = true
		}
		for _, s := range e.From {
			if !s.Live() && e.Transition != lifecycle.NewGeneration {
				t.Errorf("%s leaves terminal state %s", e.Transition, s)
			}
		}
		if e.Create && e.Transition != lifecycle.Register && e.Transition != lifecycle.Adopt && e.Transition != lifecycle.JobDeleted {
			t.Errorf("%s creates records", e.Transition)
		}
	}
	for _, s := range store.States() {
		if !entered[s] {
			t.Errorf("no transition enters %s", s)
		}
	}
}
