package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func validCleanup() CleanupMessage {
	return CleanupMessage{
		Project:     "my-project",
		Name:        "snap-1",
		SessionID:   "sess-1",
		TaskID:      "vm-17",
		Reason:      ReasonTaskCompleted,
		RequestedAt: mustTime("2024-05-01T12:00:00Z"),
	}
}

func TestCleanupEncodeDecode(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		msg  CleanupMessage
		json string
	}{
		{"task-completed", validCleanup(),
			`{"project":"my-project","name":"snap-1","sessionId":"sess-1","taskId":"vm-17","reason":"task-completed","requestedAt":"2024-05-01T12:00:00Z"}`},
		{"orphan without task, dry run", CleanupMessage{Project: "example.com:my-project", Name: "s", SessionID: "s1", Reason: ReasonOrphan, RequestedAt: mustTime("2024-05-01T12:00:00.5+02:00"), DryRun: true},
			`{"project":"example.com:my-project","name":"s","sessionId":"s1","taskId":"","reason":"orphan","requestedAt":"2024-05-01T12:00:00.5+02:00","dryRun":true}`},
		{"manual without task", CleanupMessage{Project: "my-project", Name: "s", SessionID: "s1", Reason: ReasonManual, RequestedAt: mustTime("2024-05-01T12:00:00Z")},
			`{"project":"my-project","name":"s","sessionId":"s1","taskId":"","reason":"manual","requestedAt":"2024-05-01T12:00:00Z"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data, err := tc.msg.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if diff := cmp.Diff(tc.json, string(data)); diff != "" {
				t.Errorf("Encode (-want +got):\n%s", diff)
			}
			got, err := DecodeCleanup(data)
			if err != nil {
				t.Fatalf("DecodeCleanup: %v", err)
			}
			if diff := cmp.Diff(tc.msg, got); diff != "" {
				t.Errorf("DecodeCleanup(Encode(m)) (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCleanupDecodeAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		data string
		want CleanupMessage
	}{
		{"unknown fields and nulls",
			`{"project":"my-project","name":"snap-1","sessionId":"sess-1","taskId":"vm-17","reason":"task-completed","requestedAt":"2024-05-01T12:00:00Z","dryRun":null,"attempt":3}`,
			validCleanup()},
		{"orphan with task id null",
			`{"project":"my-project","name":"snap-1","sessionId":"sess-1","taskId":null,"reason":"orphan","requestedAt":"2024-05-01T12:00:00Z","dryRun":false}`,
			CleanupMessage{Project: "my-project", Name: "snap-1", SessionID: "sess-1", Reason: ReasonOrphan, RequestedAt: mustTime("2024-05-01T12:00:00Z")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := DecodeCleanup([]byte(tc.data))
			if err != nil {
				t.Fatalf("DecodeCleanup: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecodeCleanup (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCleanupRejects(t *testing.T) {
	t.Parallel()
	miss := func(f string) *rejection { return &rejection{ReasonMissingField, f} }
	inv := func(f string) *rejection { return &rejection{ReasonInvalidField, f} }
	withC := func(key string, v any) []byte {
		var m map[string]any
		data, _ := json.Marshal(validCleanup())
		if err := json.Unmarshal(data, &m); err != nil {
			panic(err)
		}
		if v == del {
			delete(m, key)
		} else {
			m[key] = v
		}
		data, _ = json.Marshal(m)
		return data
	}
	cases := []struct {
		name string
		data []byte
		want *rejection
	}{
		{"not an object", []byte(`["my-project"]`), &rejection{ReasonBadJSON, ""}},
		{"not JSON", []byte(`project=my-project`), &rejection{ReasonBadJSON, ""}},
		{"invalid UTF-8", []byte("{\"project\":\"\xfe\"}"), &rejection{ReasonBadJSON, ""}},
		{"too large", []byte(`{"x":"` + strings.Repeat("a", MaxEventBytes) + `"}`), &rejection{ReasonTooLarge, ""}},
		{"project missing", withC("project", del), miss("project")},
		{"project invalid", withC("project", "Nope"), inv("project")},
		{"name missing", withC("name", del), miss("name")},
		{"name invalid", withC("name", "snap_1"), inv("name")},
		{"sessionId missing", withC("sessionId", del), miss("sessionId")},
		{"sessionId invalid", withC("sessionId", "S"), inv("sessionId")},
		{"reason missing", withC("reason", del), miss("reason")},
		{"reason unknown", withC("reason", "because"), inv("reason")},
		{"reason number", withC("reason", 1), inv("reason")},
		{"taskId missing for task-completed", withC("taskId", del), miss("taskId")},
		{"taskId empty for task-completed", withC("taskId", ""), miss("taskId")},
		{"taskId control character", withC("taskId", "a\x7fb"), inv("taskId")},
		{"requestedAt missing", withC("requestedAt", del), miss("requestedAt")},
		{"requestedAt not RFC 3339", withC("requestedAt", "yesterday"), inv("requestedAt")},
		{"requestedAt number", withC("requestedAt", 1714564800), inv("requestedAt")},
		{"dryRun string", withC("dryRun", "true"), inv("dryRun")},
		{"dryRun number", withC("dryRun", 1), inv("dryRun")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodeCleanup(tc.data)
			if diff := cmp.Diff(tc.want, rejectionOf(t, err)); diff != "" {
				t.Errorf("DecodeCleanup rejection (-want +got):\n%s\nerror: %v", diff, err)
			}
		})
	}
}

func TestCleanupValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		mut  func(*CleanupMessage)
		want *rejection
	}{
		{"valid", func(*CleanupMessage) {}, nil},
		{"expired needs a task", func(m *CleanupMessage) { m.Reason, m.TaskID = ReasonExpired, "" }, &rejection{ReasonMissingField, "taskId"}},
		{"threshold needs a task", func(m *CleanupMessage) { m.Reason, m.TaskID = ReasonThreshold, "" }, &rejection{ReasonMissingField, "taskId"}},
		{"session-completed needs a task", func(m *CleanupMessage) { m.Reason, m.TaskID = ReasonSessionCompleted, "" }, &rejection{ReasonMissingField, "taskId"}},
		{"orphan may name a task", func(m *CleanupMessage) { m.Reason = ReasonOrphan }, nil},
		{"manual task id still checked", func(m *CleanupMessage) { m.Reason, m.TaskID = ReasonManual, "a\nb" }, &rejection{ReasonInvalidField, "taskId"}},
		{"zero time", func(m *CleanupMessage) { m.RequestedAt = time.Time{} }, &rejection{ReasonMissingField, "requestedAt"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := validCleanup()
			tc.mut(&m)
			if diff := cmp.Diff(tc.want, rejectionOf(t, m.Validate())); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
			if _, err := m.Encode(); (err == nil) != (tc.want == nil) {
				t.Errorf("Encode error = %v, want an error: %v", err, tc.want != nil)
			}
		})
	}
	for _, r := range CleanupReasons() {
		if !r.Valid() {
			t.Errorf("CleanupReasons() has invalid %q", r)
		}
	}
}
