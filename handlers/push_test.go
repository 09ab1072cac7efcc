package handlers_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/handlers"
)

const (
	eventJSON    = `{"id":"e1","type":"session.started","time":"2024-05-01T12:00:00Z","sessionId":"s1"}`
	subscription = "projects/p/subscriptions/migration-events-push"
	publishedAt  = "2024-05-01T12:00:01.123Z"
)

var eventB64 = base64.StdEncoding.EncodeToString([]byte(eventJSON))

// eventarcHeaders are the binary-mode headers Eventarc sends for a Pub/Sub
// message.
func eventarcHeaders() map[string]string {
	return map[string]string{
		"Content-Type":   "application/json",
		"Ce-Id":          "1234567890",
		"Ce-Source":      "//pubsub.googleapis.com/projects/p/topics/migration-events",
		"Ce-Specversion": "1.0",
		"Ce-Type":        handlers.PubSubCloudEventType,
		"Ce-Time":        "2024-05-01T12:00:01.5Z",
	}
}

func pushRequest(body string, headers map[string]string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", strings.NewReader(body))
	if headers == nil {
		headers = map[string]string{"Content-Type": "application/json"}
	}
	for k, v := range headers {
		r.Header.Set(k, v)
	}
	return r
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

// rejection is what the tests compare of a *RejectError.
type rejection struct {
	Reason events.Reason
	Field  string
}

func rejectionOf(t *testing.T, err error) *rejection {
	t.Helper()
	if err == nil {
		return nil
	}
	re, ok := events.AsReject(err)
	if !ok {
		t.Fatalf("error %v (%T) is not a *events.RejectError", err, err)
	}
	if re.Detail == "" {
		t.Errorf("rejection %v has no detail", re)
	}
	return &rejection{re.Reason, re.Field}
}

func attributesJSON(n int) string {
	var b strings.Builder
	b.WriteString("{")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%d":"v"`, i)
	}
	b.WriteString("}")
	return b.String()
}

func TestDecodePush(t *testing.T) {
	t.Parallel()
	env := func(message string) string {
		return `{"message":` + message + `,"subscription":"` + subscription + `"}`
	}
	bad := func(field string) *rejection { return &rejection{events.ReasonBadEnvelope, field} }

	cases := []struct {
		name    string
		body    string
		headers map[string]string
		want    handlers.PushMessage
		wantErr *rejection
	}{
		{
			name: "pubsub push, messageId",
			body: `{"message":{"data":"` + eventB64 + `","attributes":{"origin":"job-7"},"messageId":"m1","publishTime":"` + publishedAt + `"},"subscription":"` + subscription + `","deliveryAttempt":3}`,
			want: handlers.PushMessage{Data: []byte(eventJSON), Attributes: map[string]string{"origin": "job-7"}, MessageID: "m1",
				PublishTime: mustTime(publishedAt), Subscription: subscription, DeliveryAttempt: 3, Format: handlers.FormatPubSubPush},
		},
		{
			name: "pubsub push, message_id and publish_time (emulator)",
			body: env(`{"data":"` + eventB64 + `","message_id":"m2","publish_time":"` + publishedAt + `"}`),
			want: handlers.PushMessage{Data: []byte(eventJSON), MessageID: "m2", PublishTime: mustTime(publishedAt),
				Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "pubsub push, both spellings: messageId wins",
			body: env(`{"data":"` + eventB64 + `","messageId":"m3","message_id":"m3-snake","attributes":{}}`),
			want: handlers.PushMessage{Data: []byte(eventJSON), MessageID: "m3", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "pubsub push, attributes only",
			body: env(`{"attributes":{"a":"1","b":""},"messageId":"m4"}`),
			want: handlers.PushMessage{Attributes: map[string]string{"a": "1", "b": ""}, MessageID: "m4", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "pubsub push, exactly 100 attributes",
			body: env(`{"data":"","attributes":` + attributesJSON(100) + `,"messageId":"m5"}`),
			want: handlers.PushMessage{Attributes: attrs(100), MessageID: "m5", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name:    "eventarc binary mode",
			body:    env(`{"data":"` + eventB64 + `","attributes":{"origin":"job-7"},"messageId":"1234567890","publishTime":"` + publishedAt + `"}`),
			headers: eventarcHeaders(),
			want: handlers.PushMessage{Data: []byte(eventJSON), Attributes: map[string]string{"origin": "job-7"}, MessageID: "1234567890",
				PublishTime: mustTime(publishedAt), Subscription: subscription, Format: handlers.FormatCloudEvent},
		},
		{
			name:    "eventarc binary mode, id and time from ce- headers",
			body:    env(`{"data":"` + eventB64 + `"}`),
			headers: eventarcHeaders(),
			want: handlers.PushMessage{Data: []byte(eventJSON), MessageID: "1234567890",
				PublishTime: mustTime("2024-05-01T12:00:01.5Z"), Subscription: subscription, Format: handlers.FormatCloudEvent},
		},
		{
			name: "cloudevent structured mode",
			body: `{"specversion":"1.0","id":"ce-9","source":"//pubsub.googleapis.com/projects/p/topics/t","type":"` + handlers.PubSubCloudEventType + `",` +
				`"datacontenttype":"application/json","data":` + env(`{"data":"`+eventB64+`","messageId":"m9"}`) + `}`,
			headers: map[string]string{"Content-Type": "application/cloudevents+json"},
			want:    handlers.PushMessage{Data: []byte(eventJSON), MessageID: "m9", Subscription: subscription, Format: handlers.FormatCloudEvent},
		},

		// Rejections.
		{name: "empty body", body: ``, wantErr: bad(""), want: handlers.PushMessage{Format: handlers.FormatPubSubPush}},
		{name: "not JSON", body: `message=hello`, wantErr: bad(""), want: handlers.PushMessage{Format: handlers.FormatPubSubPush}},
		{name: "array body", body: `[{"message":{}}]`, wantErr: bad(""), want: handlers.PushMessage{Format: handlers.FormatPubSubPush}},
		{name: "missing message (unwrapped event)", body: eventJSON, wantErr: bad("message"), want: handlers.PushMessage{Format: handlers.FormatPubSubPush}},
		{name: "message null", body: `{"message":null}`, wantErr: bad("message"), want: handlers.PushMessage{Format: handlers.FormatPubSubPush}},
		{name: "message not an object", body: `{"message":"hi"}`, wantErr: bad("message"), want: handlers.PushMessage{Format: handlers.FormatPubSubPush}},
		{
			name: "data not base64, id kept", body: env(`{"data":"not base64!","messageId":"m10"}`), wantErr: bad("message.data"),
			want: handlers.PushMessage{MessageID: "m10", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "data URL-safe base64", body: env(`{"data":"-_-_","messageId":"m11"}`), wantErr: bad("message.data"),
			want: handlers.PushMessage{MessageID: "m11", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "data not a string, id kept", body: env(`{"data":{"id":"e1"},"messageId":"m12"}`), wantErr: bad("message.data"),
			want: handlers.PushMessage{MessageID: "m12", Format: handlers.FormatPubSubPush},
		},
		{
			name: "missing message id", body: env(`{"data":"` + eventB64 + `"}`), wantErr: bad("message.messageId"),
			want: handlers.PushMessage{Data: []byte(eventJSON), Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "publishTime not RFC 3339", body: env(`{"data":"` + eventB64 + `","messageId":"m13","publishTime":"yesterday"}`), wantErr: bad("message.publishTime"),
			want: handlers.PushMessage{MessageID: "m13", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "deliveryAttempt a string, id kept", body: `{"message":{"messageId":"m14"},"deliveryAttempt":"3"}`, wantErr: bad("deliveryAttempt"),
			want: handlers.PushMessage{MessageID: "m14", Format: handlers.FormatPubSubPush},
		},
		{
			name: "deliveryAttempt negative", body: `{"message":{"messageId":"m15"},"deliveryAttempt":-1}`, wantErr: bad("deliveryAttempt"),
			want: handlers.PushMessage{MessageID: "m15", Format: handlers.FormatPubSubPush},
		},
		{
			name: "101 attributes", body: env(`{"attributes":` + attributesJSON(101) + `,"messageId":"m16"}`), wantErr: bad("message.attributes"),
			want: handlers.PushMessage{MessageID: "m16", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "10,000 attributes", body: env(`{"attributes":` + attributesJSON(10000) + `,"messageId":"m17"}`), wantErr: bad("message.attributes"),
			want: handlers.PushMessage{MessageID: "m17", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "attributes over 64 KiB", body: env(`{"attributes":{"a":"` + strings.Repeat("x", 40000) + `","b":"` + strings.Repeat("y", 30000) + `"},"messageId":"m18"}`),
			wantErr: bad("message.attributes"),
			want:    handlers.PushMessage{MessageID: "m18", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "attribute not a string", body: env(`{"attributes":{"n":1},"messageId":"m19"}`), wantErr: bad("message.attributes"),
			want: handlers.PushMessage{MessageID: "m19", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "attributes an array", body: env(`{"attributes":["a"],"messageId":"m20"}`), wantErr: bad("message.attributes"),
			want: handlers.PushMessage{MessageID: "m20", Subscription: subscription, Format: handlers.FormatPubSubPush},
		},
		{
			name: "wrong ce-type, ce-id kept", body: env(`{"data":"` + eventB64 + `","messageId":"1234567890"}`),
			headers: with(eventarcHeaders(), "Ce-Type", "google.cloud.storage.object.v1.finalized"),
			wantErr: bad("ce-type"),
			want:    handlers.PushMessage{MessageID: "1234567890", Format: handlers.FormatCloudEvent},
		},
		{
			name: "cloudevent without ce-source", body: env(`{"data":"` + eventB64 + `","messageId":"1234567890"}`),
			headers: with(eventarcHeaders(), "Ce-Source", ""),
			wantErr: bad(""),
			want:    handlers.PushMessage{MessageID: "1234567890", Format: handlers.FormatCloudEvent},
		},
		{
			name: "cloudevent with unparsable ce-time", body: env(`{"data":"` + eventB64 + `","messageId":"1234567890"}`),
			headers: with(eventarcHeaders(), "Ce-Time", "yesterday"),
			wantErr: bad(""),
			want:    handlers.PushMessage{Format: handlers.FormatCloudEvent},
		},
		{
			name: "unsupported ce-specversion", body: env(`{"data":"` + eventB64 + `","messageId":"1234567890"}`),
			headers: with(eventarcHeaders(), "Ce-Specversion", "0.1"),
			wantErr: bad("ce-specversion"),
			want:    handlers.PushMessage{Format: handlers.FormatCloudEvent},
		},
		{
			name: "ce- headers without ce-specversion", body: env(`{"data":"` + eventB64 + `","messageId":"m21"}`),
			headers: with(eventarcHeaders(), "Ce-Specversion", ""),
			wantErr: bad("ce-specversion"),
			want:    handlers.PushMessage{Format: handlers.FormatCloudEvent},
		},
		{
			name: "cloudevents 0.3", body: env(`{"data":"` + eventB64 + `","messageId":"m22"}`),
			headers: with(eventarcHeaders(), "Ce-Specversion", "0.3"),
			want: handlers.PushMessage{Data: []byte(eventJSON), MessageID: "m22", PublishTime: mustTime("2024-05-01T12:00:01.5Z"),
				Subscription: subscription, Format: handlers.FormatCloudEvent},
		},
		{
			name: "cloudevent whose data is not an envelope", body: eventJSON,
			headers: eventarcHeaders(),
			wantErr: bad("message"),
			want:    handlers.PushMessage{MessageID: "1234567890", Format: handlers.FormatCloudEvent},
		},
		{
			name: "cloudevent with bad base64, ce-id kept", body: env(`{"data":"%%%"}`),
			headers: eventarcHeaders(),
			wantErr: bad("message.data"),
			want:    handlers.PushMessage{MessageID: "1234567890", Subscription: subscription, Format: handlers.FormatCloudEvent},
		},
		{
			name: "batched cloudevents", body: `[]`,
			headers: map[string]string{"Content-Type": "application/cloudevents-batch+json"},
			wantErr: bad(""),
			want:    handlers.PushMessage{Format: handlers.FormatCloudEvent},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := handlers.DecodePush(pushRequest(tc.body, tc.headers))
			if diff := cmp.Diff(tc.wantErr, rejectionOf(t, err)); diff != "" {
				t.Errorf("DecodePush error (-want +got):\n%s\nerror: %v", diff, err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("DecodePush message (-want +got):\n%s", diff)
			}
		})
	}
}

// with returns h with name set to value, or removed when value is "".
func with(h map[string]string, name, value string) map[string]string {
	if value == "" {
		delete(h, name)
	} else {
		h[name] = value
	}
	return h
}

func attrs(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("k%d", i)] = "v"
	}
	return m
}

func TestDecodePushTooLarge(t *testing.T) {
	t.Parallel()
	// A valid envelope padded with spaces to exactly limit+extra bytes.
	padded := func(size int) []byte {
		body := []byte(`{"message":{"data":"` + eventB64 + `","messageId":"big"}}`)
		return append(body, bytes.Repeat([]byte(" "), size-len(body))...)
	}
	cases := []struct {
		name          string
		body          []byte
		knownLength   bool
		wantTooLarge  bool
		wantMessageID string
	}{
		{"1 MiB + 1, Content-Length set", padded(handlers.MaxBodyBytes + 1), true, true, ""},
		{"1 MiB + 1, chunked", padded(handlers.MaxBodyBytes + 1), false, true, ""},
		{"10 MiB, chunked", padded(10 << 20), false, true, ""},
		{"exactly 1 MiB", padded(handlers.MaxBodyBytes), true, false, "big"},
		{"exactly 1 MiB, chunked", padded(handlers.MaxBodyBytes), false, false, "big"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", bytes.NewReader(tc.body))
			if !tc.knownLength {
				r.ContentLength = -1
				r.Body = io.NopCloser(bytes.NewReader(tc.body)) // no length to peek at
			}
			msg, err := handlers.DecodePush(r)
			if got := errors.Is(err, handlers.ErrTooLarge); got != tc.wantTooLarge {
				t.Fatalf("errors.Is(%v, ErrTooLarge) = %v, want %v", err, got, tc.wantTooLarge)
			}
			if tc.wantTooLarge {
				if _, ok := events.AsReject(err); ok {
					t.Errorf("too-large error %v is also a rejection; the caller answers 413 for it", err)
				}
				return
			}
			if err != nil || msg.MessageID != tc.wantMessageID {
				t.Errorf("DecodePush = %q, %v; want %q, nil", msg.MessageID, err, tc.wantMessageID)
			}
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func TestDecodePushReadError(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", io.NopCloser(failingReader{}))
	_, err := handlers.DecodePush(r)
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, handlers.ErrTooLarge) {
		t.Errorf("DecodePush with a failing body: %v, want a read error", err)
	}
	if _, ok := events.AsReject(err); ok {
		t.Errorf("a read error %v is not a rejection", err)
	}
}

// TestDecodePushManyAttributesBounded checks that a push with 10,000
// attributes is refused after reading about a hundred of them. Not
// parallel: AllocsPerRun needs the process to itself.
func TestDecodePushManyAttributesBounded(t *testing.T) {
	body := `{"message":{"attributes":` + attributesJSON(10000) + `,"messageId":"m"}}`
	allocs := testing.AllocsPerRun(10, func() {
		if _, err := handlers.DecodePush(pushRequest(body, nil)); err == nil {
			t.Fatal("10,000 attributes accepted")
		}
	})
	t.Logf("%.0f allocations", allocs)
	// Reading all of them would take at least two allocations each.
	if allocs > 2000 {
		t.Errorf("DecodePush of 10,000 attributes made %.0f allocations, want fewer than 2000", allocs)
	}
}

// TestPushEnvelopeRoundTrip: what NewPushEnvelope encodes (the body the
// push simulator and the tests send), DecodePush reads back unchanged.
func TestPushEnvelopeRoundTrip(t *testing.T) {
	t.Parallel()
	cases := []handlers.PushMessage{
		{Data: []byte(`{"id":"e1"}`), Attributes: map[string]string{"type": "task.completed"}, MessageID: "m1",
			PublishTime: mustTime("2026-01-02T03:04:05.123456789Z"), Subscription: subscription, DeliveryAttempt: 4},
		{MessageID: "m2"},
		{Data: []byte{0, 0xff, '\n'}, MessageID: "m3", Attributes: map[string]string{"": "", "k": "v"}},
	}
	for _, want := range cases {
		want.Format = handlers.FormatPubSubPush
		got, err := handlers.DecodePush(pushRequest(string(handlers.NewPushEnvelope(want).Encode()), nil))
		if err != nil {
			t.Fatalf("%s: %v", want.MessageID, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s: decoded (-want +got):\n%s", want.MessageID, diff)
		}
	}
}
