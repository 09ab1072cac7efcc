package emulators
import "testing"
func FuzzSanitize(f *testing.F) { f.Add("x"); f.Fuzz(func(t *testing.T, s string) { _ = sanitize(s) }) }
