package events

import (
	"fmt"
	"unicode/utf8"
)

// Cut shortens s to at most max bytes, at a character boundary, and marks a
// cut with "…": for error details, log fields and table cells, so that a
// hostile or long value cannot flood them. Every truncation in snapsweep
// goes through Cut or Quote.
func Cut(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Quote returns s quoted (%q), cut with Cut to max bytes first; the "…" of a
// cut stands outside the quotes.
func Quote(s string, max int) string {
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	c := Cut(s, max)
	return fmt.Sprintf("%q…", c[:len(c)-len("…")])
}
