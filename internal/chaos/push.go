package chaos

import (
	"context"
	"time"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"

	"github.com/snapsweep/snapsweep/internal/pushsim"
)

// The chaos run pushes with the push simulator (package pushsim), to the
// serve instances round-robin.
type (
	pusher    struct{ *pushsim.Pusher }
	pushStats = pushsim.Stats
)

func newPusher(name, path, sub string, api *pubsubapi.SubscriptionAdminClient, targets func() []*instance,
	inflight int, fixed bool, deadline, minBack, maxBack time.Duration) *pusher {
	return &pusher{pushsim.New(pushsim.Config{Name: name, Path: path, Subscription: sub, API: api,
		Targets: func() []pushsim.Target {
			var out []pushsim.Target
			for _, in := range targets() {
				out = append(out, pushsim.Target{Name: in.name, URL: in.url(), Up: in.isUp})
			}
			return out
		},
		InFlight: inflight, Fixed: fixed, Deadline: deadline, MinBackoff: minBack, MaxBackoff: maxBack})}
}

func (p *pusher) run(ctx context.Context)      { p.Run(ctx) }
func (p *pusher) stats() pushStats             { return p.Stats() }
func (p *pusher) ackedCount() int              { return p.Acked() }
func (p *pusher) inflightTo(name string) int   { return p.InflightTo(name) }
func (p *pusher) pending() int                 { return p.Pending() }
func (p *pusher) idleFor(d time.Duration) bool { return p.IdleFor(d) }
