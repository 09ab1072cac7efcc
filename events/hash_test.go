package events

import (
	"regexp"
	"testing"
	"time"
)

// hashBase is a valid event that sets every field ContentHash covers.
const hashBase = `{"id":"evt-1","type":"snapshot.created","time":"2024-05-01T12:00:00.5Z","sessionId":"sess-1","taskId":"vm-17",` +
	`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk-1","retention":"72h","id":"4862391045337619302"},"error":"e"}`

func mustDecode(t *testing.T, data string) Event {
	t.Helper()
	e, err := Decode([]byte(data))
	if err != nil {
		t.Fatalf("Decode(%s): %v", data, err)
	}
	return e
}

// TestContentHashSameEvent: the same event, encoded differently, hashes
// equal.
func TestContentHashSameEvent(t *testing.T) {
	t.Parallel()
	want := mustDecode(t, hashBase).ContentHash()
	cases := []struct{ name, data string }{
		{"itself", hashBase},
		{"whitespace", "\n{ \"id\" : \"evt-1\",\t\"type\":\"snapshot.created\", \"time\":\"2024-05-01T12:00:00.5Z\", \"sessionId\":\"sess-1\", \"taskId\":\"vm-17\",\n" +
			` "snapshot": { "project":"my-project", "name":"snap-1", "sourceDisk":"disk-1", "retention":"72h", "id":"4862391045337619302" }, "error":"e" }` + "\n"},
		{"member order", `{"error":"e","snapshot":{"id":"4862391045337619302","retention":"72h","sourceDisk":"disk-1","name":"snap-1","project":"my-project"},` +
			`"taskId":"vm-17","sessionId":"sess-1","time":"2024-05-01T12:00:00.5Z","type":"snapshot.created","id":"evt-1"}`},
		{"unknown members", `{"x":[1,{"y":null}],"id":"evt-1","type":"snapshot.created","time":"2024-05-01T12:00:00.5Z","sessionId":"sess-1","taskId":"vm-17",` +
			`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk-1","retention":"72h","id":"4862391045337619302","zone":"z"},"error":"e","trace":"t"}`},
		{"time zone offset", `{"id":"evt-1","type":"snapshot.created","time":"2024-05-01T14:30:00.5+02:30","sessionId":"sess-1","taskId":"vm-17",` +
			`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk-1","retention":"72h","id":"4862391045337619302"},"error":"e"}`},
		{"trailing zeros in the fraction", `{"id":"evt-1","type":"snapshot.created","time":"2024-05-01T12:00:00.500000000Z","sessionId":"sess-1","taskId":"vm-17",` +
			`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk-1","retention":"72h","id":"4862391045337619302"},"error":"e"}`},
		{"snapshot.id as a number", `{"id":"evt-1","type":"snapshot.created","time":"2024-05-01T12:00:00.5Z","sessionId":"sess-1","taskId":"vm-17",` +
			`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk-1","retention":"72h","id":4862391045337619302},"error":"e"}`},
		{"escapes", `{"id":"evt\u002d1","type":"snapshot.created","time":"2024-05-01T12:00:00.5Z","sessionId":"sess-1","taskId":"vm-17",` +
			`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk\u002d1","retention":"72h","id":"\u0034862391045337619302"},"error":"\u0065"}`},
		{"retention spelled otherwise", `{"id":"evt-1","type":"snapshot.created","time":"2024-05-01T12:00:00.5Z","sessionId":"sess-1","taskId":"vm-17",` +
			`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk-1","retention":"4320m","id":"4862391045337619302"},"error":"e"}`},
		{"repeated member, last wins", `{"id":"evt-0","id":"evt-1","type":"snapshot.created","time":"2024-05-01T12:00:00.5Z","sessionId":"sess-1","taskId":"vm-17",` +
			`"snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"disk-1","retention":"72h","id":"1","id":"4862391045337619302"},"error":"e"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := mustDecode(t, tc.data).ContentHash(); got != want {
				t.Errorf("ContentHash = %s, want %s (the base event's)", got, want)
			}
		})
	}

	// Absent, null and empty optional members are one content.
	plain := mustDecode(t, `{"id":"e","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t"}`).ContentHash()
	for _, data := range []string{
		`{"id":"e","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":null,"error":null}`,
		`{"id":"e","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","error":""}`,
	} {
		if got := mustDecode(t, data).ContentHash(); got != plain {
			t.Errorf("%s: ContentHash = %s, want %s", data, got, plain)
		}
	}

	// Go values: the location and the monotonic clock reading of the time
	// are not content.
	e := mustDecode(t, hashBase)
	e.Time = e.Time.In(time.FixedZone("X", -7*3600))
	if got := e.ContentHash(); got != want {
		t.Errorf("time in another zone: ContentHash = %s, want %s", got, want)
	}
	now := time.Now()
	a, b := Event{ID: "e", Time: now}, Event{ID: "e", Time: now.Round(0)}
	if a.ContentHash() != b.ContentHash() {
		t.Error("the monotonic clock reading changes the hash")
	}
}

// TestContentHashDifferentEvent: every change of meaning changes the hash,
// including values that would run together without the length prefixes.
func TestContentHashDifferentEvent(t *testing.T) {
	t.Parallel()
	base := mustDecode(t, hashBase)
	snap := func(e *Event) *SnapshotRef { s := *e.Snapshot; e.Snapshot = &s; return e.Snapshot }
	cases := []struct {
		name string
		mut  func(*Event)
	}{
		{"id", func(e *Event) { e.ID = "evt-2" }},
		{"type", func(e *Event) { e.Type = SnapshotDeleted }},
		{"time, by a nanosecond", func(e *Event) { e.Time = e.Time.Add(time.Nanosecond) }},
		{"time, same wall clock in another zone", func(e *Event) {
			e.Time = time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.FixedZone("X", 3600))
		}},
		{"sessionId", func(e *Event) { e.SessionID = "sess-2" }},
		{"taskId", func(e *Event) { e.TaskID = "vm-18" }},
		{"taskId absent", func(e *Event) { e.TaskID = "" }},
		{"snapshot absent", func(e *Event) { e.Snapshot = nil }},
		{"snapshot.project", func(e *Event) { snap(e).Project = "my-project-2" }},
		{"snapshot.name", func(e *Event) { snap(e).Name = "snap-2" }},
		{"snapshot.sourceDisk", func(e *Event) { snap(e).SourceDisk = "disk-2" }},
		{"snapshot.sourceDisk absent", func(e *Event) { snap(e).SourceDisk = "" }},
		{"snapshot.retention", func(e *Event) { snap(e).Retention = "73h" }},
		{"snapshot.retention absent", func(e *Event) { snap(e).Retention = "" }},
		{"snapshot.retention invalid", func(e *Event) { snap(e).Retention = "72 h" }},
		{"snapshot.id", func(e *Event) { snap(e).ID = "4862391045337619303" }},
		{"snapshot.id absent", func(e *Event) { snap(e).ID = "" }},
		{"error", func(e *Event) { e.Error = "f" }},
		{"error absent", func(e *Event) { e.Error = "" }},
		{"error case", func(e *Event) { e.Error = "E" }},
		// Boundaries moved between neighbouring fields.
		{"sessionId into taskId", func(e *Event) { e.SessionID, e.TaskID = "sess-", "1vm-17" }},
		{"name into sourceDisk", func(e *Event) { snap(e).Name, snap(e).SourceDisk = "snap-1d", "isk-1" }},
		{"project into name", func(e *Event) { snap(e).Project, snap(e).Name = "my-projec", "tsnap-1" }},
		{"sourceDisk into retention", func(e *Event) { snap(e).SourceDisk, snap(e).Retention = "", "disk-172h" }},
		{"snapshot.id into error", func(e *Event) { snap(e).ID, e.Error = "486239104533761930", "2e" }},
	}
	seen := map[string]string{base.ContentHash(): "the base event"}
	for _, tc := range cases {
		e := base
		tc.mut(&e)
		h := e.ContentHash()
		if other, dup := seen[h]; dup {
			t.Errorf("%s: hashes equal to %s", tc.name, other)
		}
		seen[h] = tc.name
	}
	if base.Snapshot.ID != "4862391045337619302" || base.Error != "e" {
		t.Fatal("a case changed the base event")
	}

	// A snapshot with empty fields is not the absence of a snapshot.
	if (Event{ID: "e"}).ContentHash() == (Event{ID: "e", Snapshot: &SnapshotRef{}}).ContentHash() {
		t.Error("an empty snapshot hashes like none")
	}
}

// TestContentHashStable pins the digest of one event: hashes are stored to
// tell redeliveries from conflicts, so a change of the canonical form turns
// every redelivery of an event stored before it into a conflicting_duplicate.
// Change contentHashVersion, not this value, if the form must change.
func TestContentHashStable(t *testing.T) {
	t.Parallel()
	got := mustDecode(t, hashBase).ContentHash()
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(got) {
		t.Fatalf("ContentHash = %q, want 64 lower-case hex digits", got)
	}
	const want = "17e16d01045d82e928dd240adb35355062ed19e668756f3f99e0f30134d386ca"
	if got != want {
		t.Errorf("ContentHash of the base event = %s, want %s", got, want)
	}
}
