package handlers_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/handlers"
)

// pushVariants are the header sets FuzzDecodePush sends a body with,
// selected by the fuzzer's second argument.
var pushVariants = []func(h http.Header){
	func(h http.Header) { h.Set("Content-Type", "application/json") },
	func(h http.Header) {
		for k, v := range eventarcHeaders() {
			h.Set(k, v)
		}
	},
	func(h http.Header) {
		for k, v := range eventarcHeaders() {
			h.Set(k, v)
		}
		h.Set("Ce-Type", "google.cloud.audit.log.v1.written")
	},
	func(h http.Header) { h.Set("Content-Type", "application/cloudevents+json; charset=utf-8") },
	func(h http.Header) { h.Set("Content-Type", "application/cloudevents-batch+json") },
	func(h http.Header) {
		h.Set("Ce-Specversion", "0.3")
		h.Set("Ce-Id", "x")
		h.Set("Ce-Source", "s")
		h.Set("Ce-Type", handlers.PubSubCloudEventType)
		h.Set("Ce-Time", "not a time")
		h.Set("Ce-Weird-Extension", "\x00")
	},
	func(h http.Header) { h.Set("Ce-Type", handlers.PubSubCloudEventType) },
	func(http.Header) {},
}

func FuzzDecodePush(f *testing.F) {
	seeds := []string{
		``,
		`{}`,
		`null`,
		`[]`,
		`{"message":{}}`,
		`{"message":{"data":"` + eventB64 + `","messageId":"m1","publishTime":"` + publishedAt + `","attributes":{"a":"b"}},"subscription":"` + subscription + `","deliveryAttempt":1}`,
		`{"message":{"data":"` + eventB64 + `","message_id":"m1","publish_time":"` + publishedAt + `"},"subscription":"s"}`,
		`{"message":{"data":"!!!","messageId":"m1"}}`,
		`{"message":{"data":5,"messageId":7,"attributes":[],"publishTime":true},"deliveryAttempt":1e99}`,
		`{"message":{"attributes":` + attributesJSON(150) + `,"messageId":"m"}}`,
		`{"message":{"attributes":{"a":{"b":"c"}},"messageId":"m"}}`,
		`{"message":{"attributes":{"` + strings.Repeat("k", 66000) + `":"v"},"messageId":"m"}}`,
		`{"message":` + strings.Repeat(`{"message":`, 10001) + `}`,
		`{"specversion":"1.0","id":"i","source":"s","type":"` + handlers.PubSubCloudEventType + `","data":{"message":{"data":"` + eventB64 + `","messageId":"m"}}}`,
		`{"specversion":"1.0","id":"i","source":"s","type":"t","data_base64":"e30="}`,
		`{"specversion":"1.0","id":"i","source":"s","type":"t","data":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}`,
		`[{"specversion":"1.0","id":"i","source":"s","type":"t"}]`,
		eventJSON,
		"\xff\xfe{\"message\":{}}",
	}
	for _, s := range seeds {
		if len(s) > 4096 { // large seeds: the two formats that matter
			f.Add([]byte(s), uint8(0))
			f.Add([]byte(s), uint8(1))
			continue
		}
		for v := range pushVariants {
			f.Add([]byte(s), uint8(v))
		}
	}
	f.Fuzz(func(t *testing.T, body []byte, variant uint8) {
		r := httptest.NewRequest(http.MethodPost, "/pubsub/migration-events", bytes.NewReader(body))
		pushVariants[int(variant)%len(pushVariants)](r.Header)
		if variant >= 128 { // also exercise the read limit without a length to peek at
			r.ContentLength = -1
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		msg, err := handlers.DecodePush(r)
		if err != nil {
			if errors.Is(err, handlers.ErrTooLarge) {
				return
			}
			re, ok := events.AsReject(err)
			if !ok {
				t.Fatalf("error %v (%T) is neither a rejection nor ErrTooLarge", err, err)
			}
			if re.Reason != events.ReasonBadEnvelope || re.Detail == "" || len(re.Detail) > 1024 {
				t.Fatalf("rejection %v: want reason %q with a detail of 1 to 1024 bytes", re, events.ReasonBadEnvelope)
			}
			return
		}
		if msg.MessageID == "" {
			t.Fatal("accepted a message without an id")
		}
		if msg.Format != handlers.FormatPubSubPush && msg.Format != handlers.FormatCloudEvent {
			t.Fatalf("accepted a message with format %q", msg.Format)
		}
		if n := len(msg.Attributes); n > handlers.MaxAttributes {
			t.Fatalf("accepted %d attributes", n)
		}
		size := 0
		for k, v := range msg.Attributes {
			size += len(k) + len(v)
		}
		if size > handlers.MaxAttributeBytes {
			t.Fatalf("accepted %d bytes of attributes", size)
		}
	})
}
