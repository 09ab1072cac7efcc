package handlers

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/snapsweep/snapsweep/events"
)

// PushMessage is one Pub/Sub message as delivered by push, in either format.
type PushMessage struct {
	// Data is the message's payload, base64-decoded.
	Data []byte
	// Attributes are the message's attributes; nil when it has none.
	Attributes map[string]string
	// MessageID is the Pub/Sub message id (for Eventarc, ce-id when the body
	// does not carry it). DecodePush sets it as soon as it can be read, also
	// when it then rejects the envelope, so that the rejection can be
	// recorded under it.
	MessageID string
	// PublishTime is when Pub/Sub accepted the message (for Eventarc,
	// ce-time when the body does not carry it); zero when unknown.
	PublishTime time.Time
	// Subscription is the full name of the push subscription, when given.
	Subscription string
	// DeliveryAttempt counts deliveries when the subscription has a
	// dead-letter policy; 0 when Pub/Sub does not say.
	DeliveryAttempt int
	// Format is FormatPubSubPush or FormatCloudEvent.
	Format string
}

// The two push formats DecodePush accepts.
const (
	// FormatPubSubPush is Pub/Sub's own wrapped push JSON.
	FormatPubSubPush = "pubsub-push"
	// FormatCloudEvent is an Eventarc CloudEvent (binary or structured mode)
	// whose data is the same wrapped JSON.
	FormatCloudEvent = "cloudevent"
)

// PubSubCloudEventType is the only CloudEvent type DecodePush accepts: the
// one Eventarc uses for a message published to a Pub/Sub topic.
const PubSubCloudEventType = "google.cloud.pubsub.topic.v1.messagePublished"

// Limits of a push request. Pub/Sub itself allows at most 100 attributes;
// the byte limit keeps a hostile request from costing more than that.
const (
	// MaxBodyBytes is the largest push body read; larger ones get ErrTooLarge.
	MaxBodyBytes = 1 << 20
	// MaxAttributes is the most attributes a message may carry.
	MaxAttributes = 100
	// MaxAttributeBytes bounds the total size of attribute keys and values.
	MaxAttributeBytes = 64 << 10
)

// ErrTooLarge is returned (wrapped) by DecodePush for a body over
// MaxBodyBytes; the caller answers 413.
var ErrTooLarge = errors.New("request body exceeds 1 MiB")

// DecodePush reads a Pub/Sub push request in either format the service
// accepts: Pub/Sub's wrapped push JSON
// ({"message":{"data","attributes","messageId","publishTime"},"subscription","deliveryAttempt"}),
// or an Eventarc CloudEvent of type PubSubCloudEventType in binary mode
// (ce-* headers; structured mode works too) whose data is the same JSON.
// CloudEvents are read with the CloudEvents SDK.
//
// A body over MaxBodyBytes gives an error that errors.Is ErrTooLarge. A
// malformed envelope gives a *events.RejectError with
// events.ReasonBadEnvelope, naming the envelope field at fault; the returned
// PushMessage then still has whatever could be read, MessageID above all.
// Any other error is a failure to read the body.
//
// DecodePush does not look into Data: that is events.Decode's job.
func DecodePush(r *http.Request) (PushMessage, error) {
	var msg PushMessage
	body, err := readPushBody(r)
	if err != nil {
		return msg, err
	}

	ce := cehttp.NewMessage(r.Header, io.NopCloser(bytes.NewReader(body)))
	switch ce.ReadEncoding() {
	case binding.EncodingBinary, binding.EncodingStructured:
		msg.Format = FormatCloudEvent
		return decodeCloudEvent(r, ce, msg)
	case binding.EncodingBatch:
		msg.Format = FormatCloudEvent
		return msg, envelopeError("", "batched CloudEvents are not supported")
	}
	if hasCloudEventHeader(r.Header) {
		msg.Format = FormatCloudEvent
		return msg, envelopeError("ce-specversion", fmt.Sprintf("ce-* headers present, but ce-specversion %s is not a supported CloudEvents version (1.0 or 0.3)",
			quoteShort(r.Header.Get("Ce-Specversion"))))
	}
	msg.Format = FormatPubSubPush
	if err := decodeEnvelope(body, &msg); err != nil {
		return msg, err
	}
	if msg.MessageID == "" {
		return msg, envelopeError("message.messageId", "is required")
	}
	return msg, nil
}

func readPushBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	if r.ContentLength > MaxBodyBytes {
		return nil, fmt.Errorf("%w: Content-Length is %d", ErrTooLarge, r.ContentLength)
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	if err != nil {
		if mbe, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Errorf("%w: %w", ErrTooLarge, mbe)
		}
		return nil, fmt.Errorf("read push body: %w", err)
	}
	return body, nil
}

// hasCloudEventHeader reports whether h has a ce-* header: a request with
// one that the SDK did not take for a CloudEvent has an unknown or missing
// spec version, and is no plain Pub/Sub push either.
func hasCloudEventHeader(h http.Header) bool {
	for name := range h {
		if len(name) > 3 && strings.EqualFold(name[:3], "ce-") {
			return true
		}
	}
	return false
}

func decodeCloudEvent(r *http.Request, ce *cehttp.Message, msg PushMessage) (PushMessage, error) {
	ev, err := binding.ToEvent(r.Context(), ce)
	if err != nil {
		return msg, envelopeError("", "unreadable CloudEvent: "+err.Error())
	}
	msg.MessageID = ev.ID()
	if err := ev.Validate(); err != nil {
		return msg, envelopeError("", "invalid CloudEvent: "+err.Error())
	}
	if ev.Type() != PubSubCloudEventType {
		return msg, envelopeError("ce-type", fmt.Sprintf("CloudEvent type %s is not %s", quoteShort(ev.Type()), PubSubCloudEventType))
	}
	if err := decodeEnvelope(ev.Data(), &msg); err != nil {
		return msg, err
	}
	if msg.PublishTime.IsZero() {
		msg.PublishTime = ev.Time()
	}
	return msg, nil
}

// pushEnvelope is Pub/Sub's wrapped push JSON. The Pub/Sub emulator sends
// the message id and publish time under both spellings.
type pushEnvelope struct {
	Message         *pushEnvelopeMessage `json:"message"`
	Subscription    string               `json:"subscription"`
	DeliveryAttempt *int                 `json:"deliveryAttempt"`
}

type pushEnvelopeMessage struct {
	Data             *string         `json:"data"`
	Attributes       json.RawMessage `json:"attributes"`
	MessageID        string          `json:"messageId"`
	MessageIDSnake   string          `json:"message_id"`
	PublishTime      string          `json:"publishTime"`
	PublishTimeSnake string          `json:"publish_time"`
}

// decodeEnvelope fills msg from Pub/Sub's push JSON. It keeps the message id
// even when another field is malformed.
func decodeEnvelope(body []byte, msg *PushMessage) error {
	var w pushEnvelope
	// json.Unmarshal fills every field it can before it reports a field of
	// the wrong type, so the message id survives such an error.
	err := json.Unmarshal(body, &w)
	if m := w.Message; m != nil {
		if id := cmp.Or(m.MessageID, m.MessageIDSnake); id != "" {
			msg.MessageID = id // else keep ce-id, if any
		}
	}
	if err != nil {
		return envelopeJSONError(err)
	}
	msg.Subscription = w.Subscription
	if w.DeliveryAttempt != nil {
		if *w.DeliveryAttempt < 0 {
			return envelopeError("deliveryAttempt", "must not be negative")
		}
		msg.DeliveryAttempt = *w.DeliveryAttempt
	}
	m := w.Message
	if m == nil {
		return envelopeError("message", "is required: the body is not a Pub/Sub push envelope")
	}
	if pt := cmp.Or(m.PublishTime, m.PublishTimeSnake); pt != "" {
		t, err := time.Parse(time.RFC3339Nano, pt)
		if err != nil {
			return envelopeError("message.publishTime", "must be an RFC 3339 time")
		}
		msg.PublishTime = t
	}
	attrs, err := decodePushAttributes(m.Attributes)
	if err != nil {
		return err
	}
	msg.Attributes = attrs
	if m.Data != nil && *m.Data != "" {
		data, err := base64.StdEncoding.DecodeString(*m.Data)
		if err != nil {
			return envelopeError("message.data", "must be standard base64: "+err.Error())
		}
		msg.Data = data
	}
	return nil
}

func envelopeJSONError(err error) error {
	if ute, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		if ute.Field == "" {
			return envelopeError("", "body must be a JSON object, not "+ute.Value)
		}
		return envelopeError(ute.Field, "must not be "+ute.Value)
	}
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return envelopeError("", fmt.Sprintf("body is not JSON (at byte %d): %v", se.Offset, se))
	}
	return envelopeError("", "body is not JSON: "+err.Error())
}

// decodePushAttributes reads message.attributes, an object of strings, without
// ever holding more than MaxAttributes of them or MaxAttributeBytes.
func decodePushAttributes(raw json.RawMessage) (map[string]string, error) {
	const field = "message.attributes"
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, envelopeError(field, "must be an object of strings")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // the opening brace
		return nil, envelopeError(field, err.Error())
	}
	var attrs map[string]string
	n, size := 0, 0
	for dec.More() {
		if n++; n > MaxAttributes {
			return nil, envelopeError(field, fmt.Sprintf("more than %d attributes", MaxAttributes))
		}
		kt, err := dec.Token()
		if err != nil {
			return nil, envelopeError(field, err.Error())
		}
		vt, err := dec.Token()
		if err != nil {
			return nil, envelopeError(field, err.Error())
		}
		k, _ := kt.(string)
		v, ok := vt.(string)
		if !ok {
			return nil, envelopeError(field, fmt.Sprintf("attribute %s must be a string", quoteShort(k)))
		}
		if size += len(k) + len(v); size > MaxAttributeBytes {
			return nil, envelopeError(field, fmt.Sprintf("attributes exceed %d bytes", MaxAttributeBytes))
		}
		if attrs == nil {
			attrs = make(map[string]string)
		}
		attrs[k] = v
	}
	return attrs, nil
}

// envelopeError returns a bad_envelope rejection. The detail is cut short:
// it may quote the SDK or the JSON decoder, which may quote the request.
func envelopeError(field, detail string) error {
	return &events.RejectError{Reason: events.ReasonBadEnvelope, Field: field, Detail: events.Cut(detail, 512)}
}

// quote returns s quoted and cut short, for an error detail.
func quoteShort(s string) string { return events.Quote(s, 64) }
