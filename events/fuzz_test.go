package events

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// hostileSeeds are inputs meant to break a decoder: deep nesting, invalid
// UTF-8, long strings, wrong types, odd escapes. They are kept to a few
// kilobytes, which the fuzzer can still mutate quickly; inputs of the full
// 1 MiB are TestDecodeAllocationBounded's.
func hostileSeeds() [][]byte {
	return [][]byte{
		nil,
		[]byte("{}"),
		[]byte("null"),
		[]byte(`[]`),
		[]byte(`"\ud800"`),
		[]byte("{\"id\":\"\xed\xa0\x80\"}"), // an encoded surrogate: invalid UTF-8
		[]byte("\xef\xbb\xbf{}"),            // a byte order mark
		[]byte(`{"id":"\ud800","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s"}`),
		[]byte(`{"id":"e","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s","snapshot":{"snapshot":{"snapshot":{}}}}`),
		[]byte(`{"time":5,"type":5,"id":5,"sessionId":5,"taskId":5,"snapshot":5,"error":5}`),
		[]byte(`{"time":{},"type":[],"id":true,"sessionId":null,"snapshot":[1]}`),
		[]byte(`{"id":"e","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":7,"name":[]}}`),
		[]byte(`{"id":"e","type":"task.failed","time":"0000-01-01T00:00:00+23:59","sessionId":"s","taskId":"t"}`),
		[]byte(`{"id":"e","type":"task.failed","time":"9999-12-31T23:59:59-23:59","sessionId":"s","taskId":"t"}`),
		[]byte(`{"id":"e","type":"session.started","time":"2024-05-01T12:00:00.` + strings.Repeat("9", 500) + `Z","sessionId":"s"}`),
		[]byte(`{"x":` + strings.Repeat("[", 10001) + `}`),
		[]byte(`{"x":` + strings.Repeat(`{"a":`, 2000) + `1` + strings.Repeat("}", 2000) + `}`),
		[]byte(`{"id":"` + strings.Repeat("é", 3000) + `"}`),
		[]byte(`{"error":"` + strings.Repeat(`\u0000`, 1000) + `"}`),
		[]byte(`{"n":` + strings.Repeat("9", 2000) + `}`),
		[]byte(`{` + strings.Repeat(`"id":"x",`, 500) + `"id":"y"}`),
		[]byte(`{"id":"e","snapshot":{"retention":"` + strings.Repeat("1h", 1000) + `"}}`),
		// snapshot.id: every JSON kind, the uint64 edge, and numbers that
		// are integers only by value.
		[]byte(`{"id":"e","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":"18446744073709551616"}}`),
		[]byte(`{"id":"e","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":18446744073709551616}}`),
		[]byte(`{"id":"e","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":-0}}`),
		[]byte(`{"id":"e","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":1.0e1}}`),
		[]byte(`{"id":"e","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":"007"}}`),
		[]byte(`{"id":"e","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":""}}`),
		[]byte(`{"id":"e","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":"\u0031\u0032"}}`),
		[]byte(`{"id":"e","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s","taskId":"t","snapshot":{"project":"my-project","name":"n","id":[1],"id":{"a":true}}}`),
		[]byte(`{"snapshot":{"id":` + strings.Repeat("9", 2000) + `}}`),
	}
}

func validSeeds() [][]byte {
	return [][]byte{
		[]byte(`{"id":"e1","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s1"}`),
		[]byte(`{"id":"e2","type":"session.completed","time":"2024-05-01T12:00:00+02:00","sessionId":"s1"}`),
		[]byte(`{"id":"e3","type":"task.started","time":"2024-05-01T12:00:00.5Z","sessionId":"s1","taskId":"vm 1"}`),
		[]byte(`{"id":"e4","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"vm-1"}`),
		[]byte(`{"id":"e5","type":"task.failed","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"vm-1","error":"boom\n\ttrace"}`),
		[]byte(`{"id":"e6","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"vm-1","snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"zones/z/disks/d","retention":"1h30m"}}`),
		[]byte(`{"id":"e7","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"vm-1","snapshot":{"project":"example.com:my-project","name":"snap-1"}}`),
		[]byte(`{"id":"e8","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"vm-1","snapshot":{"project":"my-project","name":"snap-1","id":"4862391045337619302"}}`),
		[]byte(`{"id":"e9","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"vm-1","snapshot":{"project":"my-project","name":"snap-1","id":18446744073709551615}}`),
	}
}

// checkReject fails unless err is a *RejectError with a reason Decode can
// give.
func checkReject(t *testing.T, err error) {
	t.Helper()
	re, ok := AsReject(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *RejectError", err, err)
	}
	switch re.Reason {
	case ReasonBadJSON, ReasonUnknownType, ReasonMissingField, ReasonInvalidField, ReasonTooLarge:
	default:
		t.Fatalf("rejection %v has reason %q, which decoding cannot give", re, re.Reason)
	}
	if re.Detail == "" || len(re.Detail) > 512 {
		t.Fatalf("rejection %v has a detail of %d bytes, want 1 to 512", re, len(re.Detail))
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range validSeeds() {
		f.Add(s)
	}
	for _, s := range hostileSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			checkReject(t, err)
			return
		}
		if err := e.Validate(); err != nil {
			t.Fatalf("Decode accepted an event that Validate refuses: %v", err)
		}
		again, err := json.Marshal(e)
		if err != nil {
			t.Fatalf("re-encode a decoded event: %v", err)
		}
		e2, err := Decode(again)
		if err != nil {
			t.Fatalf("decode the re-encoded event %s: %v", again, err)
		}
		if diff := cmp.Diff(e, e2); diff != "" {
			t.Fatalf("round trip (-decoded +re-decoded):\n%s", diff)
		}
		if h, h2 := e.ContentHash(), e2.ContentHash(); h != h2 {
			t.Fatalf("the re-encoded event %s hashes %s, the decoded one %s", again, h2, h)
		}
	})
}

func FuzzDecodeCleanup(f *testing.F) {
	f.Add([]byte(`{"project":"my-project","name":"snap-1","sessionId":"s1","taskId":"t","reason":"task-completed","requestedAt":"2024-05-01T12:00:00Z"}`))
	f.Add([]byte(`{"project":"example.com:my-project","name":"s","sessionId":"s1","reason":"orphan","requestedAt":"2024-05-01T12:00:00.123+05:30","dryRun":true}`))
	f.Add([]byte(`{"project":"my-project","name":"s","sessionId":"s1","taskId":null,"reason":"manual","requestedAt":"2024-05-01T12:00:00Z","dryRun":false}`))
	for _, r := range CleanupReasons() {
		f.Add([]byte(`{"project":"my-project","name":"s","sessionId":"s1","taskId":"t","reason":"` + string(r) + `","requestedAt":"2024-05-01T12:00:00Z"}`))
	}
	f.Add([]byte(`{"project":1,"name":{},"sessionId":[],"taskId":true,"reason":null,"requestedAt":5,"dryRun":"yes"}`))
	for _, s := range hostileSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeCleanup(data)
		if err != nil {
			checkReject(t, err)
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("DecodeCleanup accepted a message that Validate refuses: %v", err)
		}
		again, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode a decoded message: %v", err)
		}
		m2, err := DecodeCleanup(again)
		if err != nil {
			t.Fatalf("decode the encoded message %s: %v", again, err)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("round trip (-decoded +re-decoded):\n%s", diff)
		}
	})
}

// TestDecodeAllocationBounded checks that hostile inputs cost memory in
// proportion to their size, at most. A quarter of the largest accepted size
// shows that as well as the full size does, four times faster (the race
// detector makes the walk slow). It is not parallel, so that the allocation
// counter sees this test alone.
func TestDecodeAllocationBounded(t *testing.T) {
	const size = MaxEventBytes / 4
	fill := func(prefix, unit, suffix string) []byte {
		n := (size - len(prefix) - len(suffix)) / len(unit)
		return []byte(prefix + strings.Repeat(unit, n) + suffix)
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"many unknown keys", fill(`{`, `"a":0,`, `"b":0}`)},
		{"many duplicate known keys", fill(`{`, `"id":"e",`, `"id":"e"}`)},
		{"many tiny snapshot members", fill(`{"type":"snapshot.created","snapshot":{`, `"name":"s",`, `"name":"s"}}`)},
		{"deep nesting", fill(`{"x":`, `[`, ``)},
		{"deep nesting within limit", fill(`{"x":`, `[`, ``)[:9000+5]},
		{"huge id", fill(`{"id":"`, `a`, `"}`)},
		{"huge escaped id", fill(`{"id":"`, `\u00e9`, `"}`)},
		{"huge unknown string", fill(`{"x":"`, `a`, `"}`)},
		{"huge number", fill(`{"x":`, `9`, `}`)},
		{"array of objects", fill(`{"x":[`, `{},`, `{}]}`)},
	}
	for _, tc := range cases {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, err := Decode(tc.data)
		runtime.ReadMemStats(&after)
		if err != nil {
			checkReject(t, err)
		}
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes in, %d bytes allocated (%.1fx)", tc.name, len(tc.data), allocated, float64(allocated)/float64(len(tc.data)))
		if limit := uint64(2*len(tc.data) + 512<<10); allocated > limit {
			t.Errorf("%s: Decode of %d bytes allocated %d bytes, more than %d", tc.name, len(tc.data), allocated, limit)
		}
	}
}
