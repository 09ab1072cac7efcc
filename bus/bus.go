// Package bus publishes snapsweep's own messages (cleanup requests) to
// Pub/Sub, carrying the W3C trace context in message attributes so that a
// trace continues from the migration event into the deletion.
package bus

import (
	"context"
	"fmt"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/snapsweep/snapsweep/events"
)

// Publisher publishes cleanup messages to one topic.
type Publisher struct {
	pub *pubsub.Publisher
}

// NewPublisher returns a publisher on topic (a short topic id or a full
// projects/P/topics/T name). The client stays the caller's.
func NewPublisher(client *pubsub.Client, topic string) *Publisher {
	p := client.Publisher(topic)
	return &Publisher{pub: p}
}

// Publish sends one cleanup message and waits until Pub/Sub has it: a
// message that was not accepted must not be claimed as sent.
func (p *Publisher) Publish(ctx context.Context, m events.CleanupMessage) error {
	data, err := m.Encode()
	if err != nil {
		return fmt.Errorf("encode cleanup message: %w", err)
	}
	attrs := map[string]string{
		"sessionId": m.SessionID,
		"reason":    string(m.Reason),
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(attrs))
	res := p.pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs})
	if _, err := res.Get(ctx); err != nil {
		return fmt.Errorf("publish cleanup of %s/%s: %w", m.Project, m.Name, err)
	}
	return nil
}

// Stop flushes and stops the publisher.
func (p *Publisher) Stop() { p.pub.Stop() }
