package fscount

import "testing"

func TestCollection(t *testing.T) {
	for name, want := range map[string]string{
		"projects/p/databases/(default)/documents/snapshots/proj-a~snap-1": "snapshots",
		"projects/p/databases/(default)/documents/tasks/s1~vm-1":           "tasks",
		"projects/p/databases/(default)/documents/a/b/processed_events/x":  "processed_events",
		"": "",
	} {
		if got := collection(name); got != want {
			t.Errorf("collection(%q) = %q, want %q", name, got, want)
		}
	}
}
