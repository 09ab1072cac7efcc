package main

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/events"
)

// The contract (docs/contract.md) is kept true where a test can check it.

func readContract(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/contract.md")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestContractSettingsExist: every setting the contract names is a
// setting of config (an environment variable and a flag of serve).
func TestContractSettingsExist(t *testing.T) {
	t.Parallel()
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Env] = true
	}
	named := regexp.MustCompile(`\b(SNAPSWEEP_[A-Z_]+|GOOGLE_CLOUD_PROJECT)\b`).FindAllString(readContract(t), -1)
	if len(named) < 10 {
		t.Fatalf("the contract names only %d settings; did its wording change?", len(named))
	}
	for _, n := range named {
		if !known[n] {
			t.Errorf("docs/contract.md names %s, which config does not have", n)
		}
	}
}

// TestContractEventTypesAreDecoded: the event types the contract lists are
// exactly the types snapsweep decodes, and each decodes.
func TestContractEventTypesAreDecoded(t *testing.T) {
	t.Parallel()
	var row string
	for _, line := range strings.Split(readContract(t), "\n") {
		if strings.HasPrefix(line, "| `type` |") {
			row = line
		}
	}
	var listed []string
	for _, m := range regexp.MustCompile("`([a-z]+\\.[a-z]+)`").FindAllStringSubmatch(row, -1) {
		listed = append(listed, m[1])
	}
	var want []string
	for _, ty := range events.Types() {
		want = append(want, string(ty))
	}
	slices.Sort(listed)
	slices.Sort(want)
	if diff := cmp.Diff(want, listed); diff != "" {
		t.Errorf("event types in docs/contract.md (-decoded +listed):\n%s", diff)
	}
	for _, ty := range listed {
		ev := map[string]any{"id": "e-" + ty, "type": ty, "time": "2026-12-01T10:00:00Z", "sessionId": "wave-1", "taskId": "vm-1"}
		if strings.HasPrefix(ty, "snapshot.") {
			ev["snapshot"] = map[string]any{"project": "my-project", "name": "snap-1"}
		}
		b, _ := json.Marshal(ev)
		if _, err := events.Decode(b); err != nil {
			t.Errorf("%s, as the contract describes it, does not decode: %v", ty, err)
		}
	}
}

// TestContractRejectReasonsExist: the reject reasons the contract lists are
// exactly events.Reasons().
func TestContractRejectReasonsExist(t *testing.T) {
	t.Parallel()
	doc := readContract(t)
	_, after, ok := strings.Cut(doc, "\nReasons: ")
	if !ok {
		t.Fatal(`docs/contract.md has no "Reasons:" list`)
	}
	para, _, _ := strings.Cut(after, "\n\n")
	var listed []string
	for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllStringSubmatch(para, -1) {
		listed = append(listed, m[1])
	}
	var want []string
	for _, r := range events.Reasons() {
		want = append(want, string(r))
	}
	slices.Sort(listed)
	slices.Sort(want)
	if diff := cmp.Diff(want, listed); diff != "" {
		t.Errorf("reject reasons in docs/contract.md (-events.Reasons() +listed):\n%s", diff)
	}
}
