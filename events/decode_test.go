package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rejection is what a test compares of a *RejectError: the detail is for
// people and free to change.
type rejection struct {
	Reason Reason
	Field  string
}

func rejectionOf(t *testing.T, err error) *rejection {
	t.Helper()
	if err == nil {
		return nil
	}
	re, ok := AsReject(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *RejectError", err, err)
	}
	if re.Detail == "" {
		t.Errorf("rejection %v has no detail", re)
	}
	return &rejection{Reason: re.Reason, Field: re.Field}
}

// base is a valid snapshot.created event as a JSON object; tests change
// one member at a time.
func base() map[string]any {
	return map[string]any{
		"id":        "evt-1",
		"type":      "snapshot.created",
		"time":      "2024-05-01T12:00:00Z",
		"sessionId": "sess-1",
		"taskId":    "vm-17",
		"snapshot": map[string]any{
			"project":    "my-project",
			"name":       "snap-1",
			"sourceDisk": "projects/my-project/zones/europe-west1-b/disks/disk-1",
			"retention":  "72h",
		},
	}
}

// with returns base() with key set to v (or removed when v is del), and
// with the snapshot's key set when key starts with "snapshot.".
func with(key string, v any) []byte {
	m := base()
	target := m
	if k, ok := strings.CutPrefix(key, "snapshot."); ok {
		target = maps.Clone(m["snapshot"].(map[string]any))
		m["snapshot"] = target
		key = k
	}
	if v == del {
		delete(target, key)
	} else {
		target[key] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// del marks a member to remove in with.
var del = &struct{ deleted bool }{}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDecodeValid(t *testing.T) {
	t.Parallel()
	at := mustTime("2024-05-01T12:00:00Z")
	cases := []struct {
		name string
		data string
		want Event
	}{
		{
			name: "session.started",
			data: `{"id":"e1","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s1"}`,
			want: Event{ID: "e1", Type: SessionStarted, Time: at, SessionID: "s1"},
		},
		{
			name: "session.completed",
			data: `{"id":"e1","type":"session.completed","time":"2024-05-01T12:00:00Z","sessionId":"s1"}`,
			want: Event{ID: "e1", Type: SessionCompleted, Time: at, SessionID: "s1"},
		},
		{
			name: "task.started",
			data: `{"id":"e1","type":"task.started","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"vm 1 / disk-a"}`,
			want: Event{ID: "e1", Type: TaskStarted, Time: at, SessionID: "s1", TaskID: "vm 1 / disk-a"},
		},
		{
			name: "task.completed",
			data: `{"id":"e1","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t"}`,
			want: Event{ID: "e1", Type: TaskCompleted, Time: at, SessionID: "s1", TaskID: "t"},
		},
		{
			name: "task.failed with error",
			data: `{"id":"e1","type":"task.failed","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","error":"disk busy\nretry later"}`,
			want: Event{ID: "e1", Type: TaskFailed, Time: at, SessionID: "s1", TaskID: "t", Error: "disk busy\nretry later"},
		},
		{
			name: "snapshot.created",
			data: `{"id":"e1","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"my-project","name":"snap-1","sourceDisk":"d","retention":"72h"}}`,
			want: Event{ID: "e1", Type: SnapshotCreated, Time: at, SessionID: "s1", TaskID: "t", Snapshot: &SnapshotRef{Project: "my-project", Name: "snap-1", SourceDisk: "d", Retention: "72h"}},
		},
		{
			name: "snapshot.deleted, domain-scoped project",
			data: `{"id":"e1","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"example.com:my-project","name":"s"}}`,
			want: Event{ID: "e1", Type: SnapshotDeleted, Time: at, SessionID: "s1", TaskID: "t", Snapshot: &SnapshotRef{Project: "example.com:my-project", Name: "s"}},
		},
		{
			name: "snapshot.id as a string",
			data: `{"id":"e1","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"my-project","name":"s","id":"4862391045337619302"}}`,
			want: Event{ID: "e1", Type: SnapshotCreated, Time: at, SessionID: "s1", TaskID: "t", Snapshot: &SnapshotRef{Project: "my-project", Name: "s", ID: "4862391045337619302"}},
		},
		{
			name: "snapshot.id as a number, the largest",
			data: `{"id":"e1","type":"snapshot.deleted","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"my-project","name":"s","id":18446744073709551615}}`,
			want: Event{ID: "e1", Type: SnapshotDeleted, Time: at, SessionID: "s1", TaskID: "t", Snapshot: &SnapshotRef{Project: "my-project", Name: "s", ID: "18446744073709551615"}},
		},
		{
			name: "snapshot.id escaped, null and repeated",
			data: `{"id":"e1","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"my-project","name":"s","id":null,"\u0069d":"\u0031"}}`,
			want: Event{ID: "e1", Type: SnapshotCreated, Time: at, SessionID: "s1", TaskID: "t", Snapshot: &SnapshotRef{Project: "my-project", Name: "s", ID: "1"}},
		},
		{
			name: "snapshot.id null is absent",
			data: `{"id":"e1","type":"snapshot.created","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"my-project","name":"s","id":null}}`,
			want: Event{ID: "e1", Type: SnapshotCreated, Time: at, SessionID: "s1", TaskID: "t", Snapshot: &SnapshotRef{Project: "my-project", Name: "s"}},
		},
		{
			name: "unknown fields ignored, nested and all",
			data: `{"id":"e1","extra":{"a":[1,2,{"b":null}]},"type":"session.started","Type":"bogus","time":"2024-05-01T12:00:00Z","sessionId":"s1","n":1e400}`,
			want: Event{ID: "e1", Type: SessionStarted, Time: at, SessionID: "s1"},
		},
		{
			name: "null optional members are absent",
			data: `{"id":"e1","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":null,"snapshot":null,"error":null}`,
			want: Event{ID: "e1", Type: SessionStarted, Time: at, SessionID: "s1"},
		},
		{
			name: "last duplicate wins",
			data: `{"id":"e0","id":"e1","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s1"}`,
			want: Event{ID: "e1", Type: SessionStarted, Time: at, SessionID: "s1"},
		},
		{
			name: "whitespace and escapes",
			data: " \n{ \"id\" : \"\\u00e9v\\u00e9nement\" , \"type\":\"session.started\",\"time\":\"2024-05-01T14:00:00.123456789+02:00\",\"sessionId\":\"s_1-a\" } \n",
			want: Event{ID: "événement", Type: SessionStarted, Time: mustTime("2024-05-01T12:00:00.123456789Z"), SessionID: "s_1-a"},
		},
		{
			name: "snapshot on a task event is accepted",
			data: `{"id":"e1","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"my-project","name":"s"}}`,
			want: Event{ID: "e1", Type: TaskCompleted, Time: at, SessionID: "s1", TaskID: "t", Snapshot: &SnapshotRef{Project: "my-project", Name: "s"}},
		},
		{
			name: "limits reached, not exceeded",
			data: fmt.Sprintf(`{"id":%q,"type":"task.failed","time":"9999-12-31T23:59:59.999999999Z","sessionId":%q,"taskId":%q,"error":%q}`,
				strings.Repeat("é", 256), "a"+strings.Repeat("-", 62), strings.Repeat("x", 256), strings.Repeat("e", MaxErrorLen)),
			want: Event{ID: strings.Repeat("é", 256), Type: TaskFailed, Time: mustTime("9999-12-31T23:59:59.999999999Z"),
				SessionID: "a" + strings.Repeat("-", 62), TaskID: strings.Repeat("x", 256), Error: strings.Repeat("e", MaxErrorLen)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode([]byte(tc.data))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate of a decoded event: %v", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	bad := func(f string) *rejection { return &rejection{ReasonBadJSON, f} }
	miss := func(f string) *rejection { return &rejection{ReasonMissingField, f} }
	inv := func(f string) *rejection { return &rejection{ReasonInvalidField, f} }
	long := func(n int) string { return strings.Repeat("a", n) }

	cases := []struct {
		name string
		data []byte
		want *rejection
	}{
		// The document.
		{"empty", []byte(""), bad("")},
		{"whitespace only", []byte(" \n"), bad("")},
		{"array", []byte(`[{"id":"e1"}]`), bad("")},
		{"string", []byte(`"hello"`), bad("")},
		{"number", []byte(`42`), bad("")},
		{"null", []byte(`null`), bad("")},
		{"truncated", []byte(`{"id":"e1",`), bad("")},
		{"syntax", []byte(`{"id" "e1"}`), bad("")},
		{"trailing comma", []byte(`{"id":"e1",}`), bad("")},
		{"trailing data", []byte(`{"id":"e1"} {}`), bad("")},
		{"trailing garbage", []byte(`{"id":"e1"}x`), bad("")},
		{"invalid UTF-8 in a string", []byte("{\"id\":\"e\xff1\"}"), bad("")},
		{"invalid UTF-8 in an unknown member", append(with("x", "ok"), 0xc3), bad("")},
		{"nesting beyond the decoder's limit", []byte(`{"x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`), bad("")},
		{"too large", []byte(`{"x":"` + long(MaxEventBytes) + `"}`), &rejection{ReasonTooLarge, ""}},

		// id
		{"id missing", with("id", del), miss("id")},
		{"id null", with("id", nil), miss("id")},
		{"id empty", with("id", ""), miss("id")},
		{"id number", with("id", 7), inv("id")},
		{"id too long", with("id", long(257)), inv("id")},
		{"id control character", with("id", "e\n1"), inv("id")},
		{"id non-breaking space", with("id", "e\u00a01"), inv("id")},
		{"id zero-width space", with("id", "e\u200b1"), inv("id")},

		// type
		{"type missing", with("type", del), miss("type")},
		{"type empty", with("type", ""), miss("type")},
		{"type unknown", with("type", "snapshot.exploded"), &rejection{ReasonUnknownType, "type"}},
		{"type wrong case", with("type", "Snapshot.Created"), &rejection{ReasonUnknownType, "type"}},
		{"type array", with("type", []string{"task.started"}), inv("type")},

		// time
		{"time missing", with("time", del), miss("time")},
		{"time empty", with("time", ""), miss("time")},
		{"time zero", with("time", "0001-01-01T00:00:00Z"), miss("time")},
		{"time number", with("time", 5), inv("time")},
		{"time object", with("time", map[string]any{"seconds": 5}), inv("time")},
		{"time without zone", with("time", "2024-05-01T12:00:00"), inv("time")},
		{"time date only", with("time", "2024-05-01"), inv("time")},
		{"time lower-case t", with("time", "2024-05-01t12:00:00Z"), inv("time")},
		{"time comma fraction", with("time", "2024-05-01T12:00:00,5Z"), inv("time")},
		{"time space separator", with("time", "2024-05-01 12:00:00Z"), inv("time")},
		{"time February 30", with("time", "2024-02-30T12:00:00Z"), inv("time")},
		{"time month 13", with("time", "2024-13-01T12:00:00Z"), inv("time")},
		{"time hour 24", with("time", "2024-05-01T24:00:00Z"), inv("time")},
		{"time leap second", with("time", "2016-12-31T23:59:60Z"), inv("time")},
		{"time offset hour 24", with("time", "2024-05-01T12:00:00+24:00"), inv("time")},
		{"time unix seconds string", with("time", "1714564800"), inv("time")},

		// sessionId
		{"sessionId missing", with("sessionId", del), miss("sessionId")},
		{"sessionId upper case", with("sessionId", "Sess-1"), inv("sessionId")},
		{"sessionId leading dash", with("sessionId", "-sess"), inv("sessionId")},
		{"sessionId dot", with("sessionId", "sess.1"), inv("sessionId")},
		{"sessionId 64 characters", with("sessionId", long(64)), inv("sessionId")},
		{"sessionId trailing newline", with("sessionId", "sess\n"), inv("sessionId")},
		{"sessionId bool", with("sessionId", true), inv("sessionId")},

		// taskId
		{"taskId missing on snapshot event", with("taskId", del), miss("taskId")},
		{"taskId null on snapshot event", with("taskId", nil), miss("taskId")},
		{"taskId missing on task event", []byte(`{"id":"e1","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s1"}`), miss("taskId")},
		{"taskId too long", with("taskId", long(257)), inv("taskId")},
		{"taskId tab", with("taskId", "vm\t1"), inv("taskId")},
		{"taskId number", with("taskId", 17), inv("taskId")},
		{"taskId invalid on session event", []byte(`{"id":"e1","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"a\u0000b"}`), inv("taskId")},

		// snapshot
		{"snapshot missing", with("snapshot", del), miss("snapshot")},
		{"snapshot null", with("snapshot", nil), miss("snapshot")},
		{"snapshot string", with("snapshot", "snap-1"), inv("snapshot")},
		{"snapshot array", with("snapshot", []any{}), inv("snapshot")},
		{"snapshot.project missing", with("snapshot.project", del), miss("snapshot.project")},
		{"snapshot.project too short", with("snapshot.project", "proj"), inv("snapshot.project")},
		{"snapshot.project too long", with("snapshot.project", "p"+long(30)), inv("snapshot.project")},
		{"snapshot.project digit first", with("snapshot.project", "1project"), inv("snapshot.project")},
		{"snapshot.project trailing dash", with("snapshot.project", "my-project-"), inv("snapshot.project")},
		{"snapshot.project upper case", with("snapshot.project", "My-Project"), inv("snapshot.project")},
		{"snapshot.project domain without dot", with("snapshot.project", "example:my-project"), inv("snapshot.project")},
		{"snapshot.project number", with("snapshot.project", 123456), inv("snapshot.project")},
		{"snapshot.name missing", with("snapshot.name", del), miss("snapshot.name")},
		{"snapshot.name upper case", with("snapshot.name", "Snap-1"), inv("snapshot.name")},
		{"snapshot.name digit first", with("snapshot.name", "1snap"), inv("snapshot.name")},
		{"snapshot.name trailing dash", with("snapshot.name", "snap-"), inv("snapshot.name")},
		{"snapshot.name 64 characters", with("snapshot.name", long(64)), inv("snapshot.name")},
		{"snapshot.name underscore", with("snapshot.name", "snap_1"), inv("snapshot.name")},
		{"snapshot.sourceDisk too long", with("snapshot.sourceDisk", long(1025)), inv("snapshot.sourceDisk")},
		{"snapshot.sourceDisk object", with("snapshot.sourceDisk", map[string]any{}), inv("snapshot.sourceDisk")},
		{"snapshot.retention not a duration", with("snapshot.retention", "3 days"), inv("snapshot.retention")},
		{"snapshot.retention days unit", with("snapshot.retention", "3d"), inv("snapshot.retention")},
		{"snapshot.retention zero", with("snapshot.retention", "0s"), inv("snapshot.retention")},
		{"snapshot.retention negative", with("snapshot.retention", "-1h"), inv("snapshot.retention")},
		{"snapshot.retention over 10 years", with("snapshot.retention", "87601h"), inv("snapshot.retention")},
		{"snapshot.retention overflow", with("snapshot.retention", "9999999999999h"), inv("snapshot.retention")},
		{"snapshot.retention number", with("snapshot.retention", 72), inv("snapshot.retention")},
		{"snapshot.id empty", with("snapshot.id", ""), inv("snapshot.id")},
		{"snapshot.id zero", with("snapshot.id", "0"), inv("snapshot.id")},
		{"snapshot.id zero number", with("snapshot.id", 0), inv("snapshot.id")},
		{"snapshot.id leading zero", with("snapshot.id", "012"), inv("snapshot.id")},
		{"snapshot.id plus sign", with("snapshot.id", "+12"), inv("snapshot.id")},
		{"snapshot.id minus sign", with("snapshot.id", "-12"), inv("snapshot.id")},
		{"snapshot.id negative number", with("snapshot.id", -12), inv("snapshot.id")},
		{"snapshot.id letters", with("snapshot.id", "12a"), inv("snapshot.id")},
		{"snapshot.id hex", with("snapshot.id", "0x1f"), inv("snapshot.id")},
		{"snapshot.id spaces", with("snapshot.id", " 12 "), inv("snapshot.id")},
		{"snapshot.id Arabic-Indic digits", with("snapshot.id", "١٢"), inv("snapshot.id")},
		{"snapshot.id over uint64", with("snapshot.id", "18446744073709551616"), inv("snapshot.id")},
		{"snapshot.id number over uint64", with("snapshot.id", json.Number("18446744073709551616")), inv("snapshot.id")},
		{"snapshot.id 21 digits", with("snapshot.id", "100000000000000000000"), inv("snapshot.id")},
		{"snapshot.id fraction", with("snapshot.id", 12.5), inv("snapshot.id")},
		{"snapshot.id zero fraction", with("snapshot.id", json.Number("12.0")), inv("snapshot.id")},
		{"snapshot.id exponent", with("snapshot.id", json.Number("12e2")), inv("snapshot.id")},
		{"snapshot.id decimal string", with("snapshot.id", "12.0"), inv("snapshot.id")},
		{"snapshot.id bool", with("snapshot.id", true), inv("snapshot.id")},
		{"snapshot.id array", with("snapshot.id", []any{"12"}), inv("snapshot.id")},
		{"snapshot.id object", with("snapshot.id", map[string]any{"id": "12"}), inv("snapshot.id")},
		{"snapshot.id invalid on a task event", []byte(`{"id":"e1","type":"task.completed","time":"2024-05-01T12:00:00Z","sessionId":"s1","taskId":"t","snapshot":{"project":"my-project","name":"s","id":"x"}}`), inv("snapshot.id")},
		{"snapshot invalid on session event", []byte(`{"id":"e1","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s1","snapshot":{"project":"my-project"}}`), miss("snapshot.name")},

		// error
		{"error too long", with("error", long(MaxErrorLen+1)), inv("error")},
		{"error object", with("error", map[string]any{"code": 5}), inv("error")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Decode(tc.data)
			if diff := cmp.Diff(tc.want, rejectionOf(t, err)); diff != "" {
				t.Errorf("Decode rejection (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

// TestSnapshotIDRejectDetail: the detail of a refused snapshot.id quotes
// what was sent, in its JSON form, and stays short.
func TestSnapshotIDRejectDetail(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v    any
		want string
	}{
		{"", `not ""`},
		{"007", `not "007"`},
		{"snap-1", `not "snap-1"`},
		{json.Number("1e3"), "not the number 1e3"},
		{json.Number("-5"), "not the number -5"},
		{json.Number("1" + strings.Repeat("0", 200)), "not the number 1" + strings.Repeat("0", 63) + "…"},
		{strings.Repeat("9", 200), `not "` + strings.Repeat("9", 64) + `"…`},
		{false, "not the boolean false"},
		{map[string]any{}, "not an object"},
	}
	for _, tc := range cases {
		_, err := Decode(with("snapshot.id", tc.v))
		re, ok := AsReject(err)
		if !ok || re.Reason != ReasonInvalidField || re.Field != "snapshot.id" {
			t.Errorf("snapshot.id %#v: %v, want an invalid_field rejection of snapshot.id", tc.v, err)
			continue
		}
		if !strings.HasSuffix(re.Detail, tc.want) || !strings.Contains(re.Detail, "18446744073709551615") {
			t.Errorf("snapshot.id %#v: detail %q, want it to state the rule and end in %q", tc.v, re.Detail, tc.want)
		}
	}
}

func TestDecodeKeepsReadableFields(t *testing.T) {
	t.Parallel()
	got, err := Decode([]byte(`{"id":"e1","type":"task.failed","time":5,"sessionId":"s1","taskId":"t"}`))
	if err == nil {
		t.Fatal("Decode accepted a numeric time")
	}
	want := Event{ID: "e1", Type: TaskFailed, SessionID: "s1", TaskID: "t"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("partial event (-want +got):\n%s", diff)
	}
}

func TestValidateGoValues(t *testing.T) {
	t.Parallel()
	ok := Event{ID: "e1", Type: SessionStarted, Time: mustTime("2024-05-01T12:00:00Z"), SessionID: "s1"}
	cases := []struct {
		name string
		mut  func(*Event)
		want *rejection
	}{
		{"valid", func(*Event) {}, nil},
		{"invalid UTF-8 id", func(e *Event) { e.ID = "e\xff" }, &rejection{ReasonInvalidField, "id"}},
		{"invalid UTF-8 error", func(e *Event) { e.Error = "bad \xff" }, &rejection{ReasonInvalidField, "error"}},
		{"invalid UTF-8 sourceDisk", func(e *Event) {
			e.Type, e.TaskID = SnapshotCreated, "t"
			e.Snapshot = &SnapshotRef{Project: "my-project", Name: "s", SourceDisk: "\xc3"}
		}, &rejection{ReasonInvalidField, "snapshot.sourceDisk"}},
		{"snapshot.id not canonical", func(e *Event) {
			e.Type, e.TaskID = SnapshotCreated, "t"
			e.Snapshot = &SnapshotRef{Project: "my-project", Name: "s", ID: "0012"}
		}, &rejection{ReasonInvalidField, "snapshot.id"}},
		{"snapshot.id valid", func(e *Event) {
			e.Type, e.TaskID = SnapshotDeleted, "t"
			e.Snapshot = &SnapshotRef{Project: "my-project", Name: "s", ID: "12"}
		}, nil},
		{"year 10000", func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, &rejection{ReasonInvalidField, "time"}},
		{"zero time", func(e *Event) { e.Time = time.Time{} }, &rejection{ReasonMissingField, "time"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := ok
			tc.mut(&e)
			if diff := cmp.Diff(tc.want, rejectionOf(t, e.Validate())); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidIdentifiers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		fn    func(string) bool
		name  string
		good  []string
		wrong []string
	}{
		{ValidSessionID, "ValidSessionID",
			[]string{"s", "0", "sess-1", "a_b", strings.Repeat("a", 63)},
			[]string{"", "-a", "_a", "A", "a.b", "a b", strings.Repeat("a", 64), "é"}},
		{ValidSnapshotName, "ValidSnapshotName",
			[]string{"a", "snap-1", "a" + strings.Repeat("b", 62)},
			[]string{"", "1a", "a-", "A", "a_b", "a" + strings.Repeat("b", 63)}},
		{ValidSnapshotID, "ValidSnapshotID",
			[]string{"1", "10", "4862391045337619302", "18446744073709551615"},
			[]string{"", "0", "00", "01", "+1", "-1", " 1", "1 ", "1.0", "1e3", "0x10", "18446744073709551616", "99999999999999999999", "١"}},
		{ValidTaskID, "ValidTaskID",
			[]string{"t", "vm 1", "ταυ", "🚀", strings.Repeat("x", 256)},
			[]string{"", " \t", "a\nb", "\u2028", strings.Repeat("x", 257), "\xff"}},
		{ValidProjectID, "ValidProjectID",
			[]string{"my-project", "abcdef", "a" + strings.Repeat("b", 29), "example.com:my-project", "a.b-c.org:my-project"},
			[]string{"", "abcde", "a" + strings.Repeat("b", 30), "1abcdef", "abcdef-", "My-project", "my_project",
				"example:my-project", ".com:my-project", "example.com:", "example..com:my-project", "-x.com:my-project"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for _, s := range tc.good {
				if !tc.fn(s) {
					t.Errorf("%s(%q) = false, want true", tc.name, s)
				}
			}
			for _, s := range tc.wrong {
				if tc.fn(s) {
					t.Errorf("%s(%q) = true, want false", tc.name, s)
				}
			}
		})
	}
}

func TestTypes(t *testing.T) {
	t.Parallel()
	seen := map[Type]bool{}
	for _, ty := range Types() {
		if !ty.Valid() || seen[ty] {
			t.Errorf("Types() has %q: valid=%v, duplicate=%v", ty, ty.Valid(), seen[ty])
		}
		seen[ty] = true
	}
	if len(seen) != 7 {
		t.Errorf("Types() has %d types, want 7", len(seen))
	}
	if Type("task.paused").Valid() || Type("").Valid() {
		t.Error("unknown types are valid")
	}
	// Reasons are metric label values and stored in rejection records: their
	// spelling is part of the contract.
	want := []Reason{"bad_json", "unknown_type", "missing_field", "invalid_field",
		"project_not_allowed", "bad_envelope", "too_large", "future_time", "conflicting_duplicate"}
	if diff := cmp.Diff(want, Reasons()); diff != "" {
		t.Errorf("Reasons() (-want +got):\n%s", diff)
	}
	for _, r := range Reasons() {
		if !r.Valid() {
			t.Errorf("Reasons() has invalid %q", r)
		}
	}
	if ReasonFutureTime != "future_time" || ReasonConflictingDuplicate != "conflicting_duplicate" {
		t.Errorf("reason constants changed: %q, %q", ReasonFutureTime, ReasonConflictingDuplicate)
	}
	if Reason("future").Valid() || Reason("").Valid() {
		t.Error("unknown reasons are valid")
	}
}

func TestRejectError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want string
	}{
		{&RejectError{ReasonInvalidField, "sessionId", "must match " + sessionIDPattern}, "invalid_field: sessionId: must match ^[a-z0-9][a-z0-9_-]{0,62}$"},
		{&RejectError{Reason: ReasonBadJSON, Detail: "message is empty"}, "bad_json: message is empty"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}

	wrapped := fmt.Errorf("handle message m1: %w", &RejectError{Reason: ReasonTooLarge, Detail: "x"})
	re, ok := AsReject(wrapped)
	if !ok || re.Reason != ReasonTooLarge {
		t.Errorf("AsReject(wrapped) = %v, %v", re, ok)
	}
	if re, ok := AsReject(errors.New("plain")); ok || re != nil {
		t.Errorf("AsReject(plain) = %v, %v", re, ok)
	}
	if re, ok := AsReject(nil); ok || re != nil {
		t.Errorf("AsReject(nil) = %v, %v", re, ok)
	}
}

func TestRejectDetailIsShort(t *testing.T) {
	t.Parallel()
	_, err := Decode(with("type", strings.Repeat("x", 100000)))
	if err == nil || len(err.Error()) > 200 {
		t.Errorf("rejection of a huge type has a %d-byte message", len(err.Error()))
	}
}

func TestAllowlist(t *testing.T) {
	t.Parallel()
	a := NewAllowlist([]string{"my-project", " other-project ", "", "example.com:legacy-one"})
	for _, p := range []string{"my-project", "other-project", "example.com:legacy-one"} {
		if err := a.Check(p); err != nil {
			t.Errorf("Check(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "not-mine", "MY-PROJECT", "my-project "} {
		got := rejectionOf(t, a.Check(p))
		if diff := cmp.Diff(&rejection{ReasonProjectNotAllowed, "snapshot.project"}, got); diff != "" {
			t.Errorf("Check(%q) (-want +got):\n%s", p, diff)
		}
	}
	var none Allowlist
	if none.Check("my-project") == nil {
		t.Error("the zero Allowlist allows a project")
	}
}
