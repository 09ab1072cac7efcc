// Package bus publishes snapsweep's own messages (cleanup requests) to
// Pub/Sub, carrying the W3C trace context in message attributes so that a
// trace continues from the migration event into the deletion.
//
// Every cleanup message carries its snapshot's project in the attribute
// ProjectAttribute, so that Pub/Sub can route each project's messages to a
// push subscription of its own (ProjectFilter): push flow control is per
// subscription, and one project's quota-paused deliveries, answered 503,
// must not shrink the push window of every other project (docs/cleanup.md,
// "Pacing").
//
// It owns the publish only: what to publish, and what a failed publish
// means for the record, is the caller's (cleanup.Scheduler).
package bus

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

	"github.com/snapsweep/snapsweep/events"
)

// ProjectAttribute is the message attribute that holds a cleanup message's
// project (events.CleanupMessage.Project).
const ProjectAttribute = "project"

// ProjectFilter is the subscription filter that selects the cleanup
// messages of project p: the filter of p's push subscription (Terraform's
// google_pubsub_subscription.cleanup_push) and of the chaos harness's.
func ProjectFilter(p string) string {
	return "attributes." + ProjectAttribute + " = " + strconv.Quote(p)
}

// UnroutedFilter selects the cleanup messages without a project attribute:
// those published before the attribute existed, or by an older revision
// during a rollout. The catch-all subscription has it, so that no
// per-project filter strands them.
const UnroutedFilter = "NOT attributes:" + ProjectAttribute

// Publisher publishes cleanup messages to one topic.
type Publisher struct {
	pub     *pubsub.Publisher
	timeout time.Duration
}

// Options tune a Publisher.
type Options struct {
	// Timeout bounds one Publish (default 5s), and the client's own
	// retries of it: with Pub/Sub down, a publish fails within it instead
	// of the library's 60 s. A caller's earlier deadline wins, less a
	// reserve of a second for undoing what the failed publish leaves.
	Timeout time.Duration
}

// reserve is the time kept, before the caller's deadline, for the caller to
// undo its claim when the publish fails.
const reserve = time.Second

// NewPublisher returns a publisher on topic (a short topic id or a full
// projects/P/topics/T name). The client stays the caller's.
func NewPublisher(client *pubsub.Client, topic string, opts ...Options) *Publisher {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	p := client.Publisher(topic)
	p.PublishSettings.Timeout = o.Timeout
	return &Publisher{pub: p, timeout: o.Timeout}
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
		// Routes the message to its project's push subscription.
		ProjectAttribute: m.Project,
	}
	otel.GetTextMapPropagator().Inject(ctx, propagation.MapCarrier(attrs))
	timeout := p.timeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = max(min(timeout, time.Until(dl)-reserve), 100*time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	res := p.pub.Publish(ctx, &pubsub.Message{Data: data, Attributes: attrs})
	if _, err := res.Get(ctx); err != nil {
		return fmt.Errorf("publish cleanup of %s/%s: %w", m.Project, m.Name, err)
	}
	return nil
}

// Stop flushes and stops the publisher.
func (p *Publisher) Stop() { p.pub.Stop() }
