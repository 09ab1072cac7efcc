package terraform_test

import (
	"os"
	"regexp"
	"testing"
)

// TestEveryAlertHasARunbookSection: each alert policy in monitoring.tf links
// to docs/operations.md#<alert>, so that section must exist.
func TestEveryAlertHasARunbookSection(t *testing.T) {
	t.Parallel()
	tf, err := os.ReadFile("monitoring.tf")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	alerts := regexp.MustCompile(`(?m)^    ([a-z][a-z-]+) = \{$`).FindAllSubmatch(tf, -1)
	if len(alerts) < 6 {
		t.Fatalf("found %d alerts in monitoring.tf, want at least 6 (failures, refusals, dead letters, health, growth, breaker)", len(alerts))
	}
	for _, a := range alerts {
		heading := regexp.MustCompile(`(?m)^## ` + regexp.QuoteMeta(string(a[1])) + `$`)
		if !heading.Match(doc) {
			t.Errorf("alert %q has no '## %s' section in docs/operations.md", a[1], a[1])
		}
	}
}
