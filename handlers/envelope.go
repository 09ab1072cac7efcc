package handlers

import (
	"encoding/json"
	"time"
)

// PushEnvelope is Pub/Sub's wrapped push body as Pub/Sub sends it: the one
// definition of the envelope that snapsweep writes (the push simulator, the
// demo, benchmarks and tests). DecodePush reads it back, and every other
// spelling Pub/Sub and its emulator use (message_id, publish_time).
type PushEnvelope struct {
	Message         PushEnvelopeMessage `json:"message"`
	Subscription    string              `json:"subscription,omitempty"`
	DeliveryAttempt int                 `json:"deliveryAttempt,omitempty"`
}

// PushEnvelopeMessage is the message inside a PushEnvelope; Data is
// base64-encoded on the wire.
type PushEnvelopeMessage struct {
	Data        []byte            `json:"data,omitempty"`
	Attributes  map[string]string `json:"attributes,omitempty"`
	MessageID   string            `json:"messageId"`
	PublishTime time.Time         `json:"publishTime,omitzero"`
}

// NewPushEnvelope wraps m the way Pub/Sub push does (m.Format is ignored).
func NewPushEnvelope(m PushMessage) PushEnvelope {
	pt := m.PublishTime
	if !pt.IsZero() {
		pt = pt.UTC()
	}
	return PushEnvelope{
		Message:      PushEnvelopeMessage{Data: m.Data, Attributes: m.Attributes, MessageID: m.MessageID, PublishTime: pt},
		Subscription: m.Subscription, DeliveryAttempt: m.DeliveryAttempt,
	}
}

// Encode is the envelope's JSON, the body of a push request.
func (e PushEnvelope) Encode() []byte {
	b, err := json.Marshal(e)
	if err != nil { // unreachable: every field encodes
		panic(err)
	}
	return b
}
