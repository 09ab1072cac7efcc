package chaos

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	pubsubapi "cloud.google.com/go/pubsub/v2/apiv1"

	"github.com/snapsweep/snapsweep/bus"
	"github.com/snapsweep/snapsweep/internal/pushsim"
)

// The chaos run pushes with the push simulator (package pushsim), to the
// serve instances round-robin.
type (
	pusher    struct{ *pushsim.Pusher }
	pushStats = pushsim.Stats
)

func newPusher(name, path, sub string, api *pubsubapi.SubscriptionAdminClient, targets func() []*instance,
	inflight int, fixed bool, deadline, minBack, maxBack time.Duration, accept func(map[string]string) bool) *pusher {
	return &pusher{pushsim.New(pushsim.Config{Name: name, Path: path, Subscription: sub, API: api,
		Targets: func() []pushsim.Target {
			var out []pushsim.Target
			for _, in := range targets() {
				out = append(out, pushsim.Target{Name: in.name, URL: in.url(), Up: in.isUp})
			}
			return out
		},
		InFlight: inflight, Fixed: fixed, Deadline: deadline, MinBackoff: minBack, MaxBackoff: maxBack, Accept: accept})}
}

func (p *pusher) run(ctx context.Context)      { p.Run(ctx) }
func (p *pusher) stats() pushStats             { return p.Stats() }
func (p *pusher) ackedCount() int              { return p.Acked() }
func (p *pusher) inflightTo(name string) int   { return p.InflightTo(name) }
func (p *pusher) pending() int                 { return p.Pending() }
func (p *pusher) idleFor(d time.Duration) bool { return p.IdleFor(d) }

// cleanupRoute is one push subscription of the cleanup topic, as Terraform
// makes them (terraform/pubsub.tf): one per allowlisted project, filtered
// bus.ProjectFilter(project), and the catch-all (project ""), filtered
// bus.UnroutedFilter, for messages without a project attribute. Push flow
// control is per subscription, so each route gets a pusher, and a push
// window, of its own.
type cleanupRoute struct {
	project string // "" for the catch-all
	sub     string // full subscription name
}

// accept is the route's filter. The Pub/Sub emulator stores a
// subscription's filter but does not apply it (measured:
// bus.TestProjectFiltersOnTheEmulator), so every route's subscription gets
// every cleanup message and its pusher applies the filter itself,
// acknowledging what does not match unpushed, as Pub/Sub does. It is the
// meaning of the route's filter expression, which the subscription
// carries too.
func (r cleanupRoute) accept(attrs map[string]string) bool {
	p, ok := attrs[bus.ProjectAttribute]
	if r.project == "" {
		return !ok
	}
	return ok && p == r.project
}

func (r cleanupRoute) filter() string {
	if r.project == "" {
		return bus.UnroutedFilter
	}
	return bus.ProjectFilter(r.project)
}

func (r cleanupRoute) String() string {
	if r.project == "" {
		return "unrouted"
	}
	return r.project
}

// pushGroup is the pushers of one topic's subscriptions, one each, seen as
// one where the run only needs totals (what is pending, in flight, acked).
type pushGroup struct {
	routes  []cleanupRoute
	pushers []*pusher
}

func newCleanupPushers(routes []cleanupRoute, api *pubsubapi.SubscriptionAdminClient, targets func() []*instance,
	inflight int, fixed bool, deadline, minBack, maxBack time.Duration) *pushGroup {
	g := &pushGroup{routes: routes}
	for _, r := range routes {
		g.pushers = append(g.pushers, newPusher("snapshot-cleanup/"+r.String(), "/pubsub/snapshot-cleanup", r.sub, api,
			targets, inflight, fixed, deadline, minBack, maxBack, r.accept))
	}
	return g
}

func (g *pushGroup) run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, p := range g.pushers {
		wg.Go(func() { p.run(ctx) })
	}
	wg.Wait()
}

func (g *pushGroup) stats() pushStats {
	var all []pushStats
	for _, p := range g.pushers {
		all = append(all, p.stats())
	}
	return pushsim.Sum(all...)
}

// byRoute says what each subscription's pusher did.
func (g *pushGroup) byRoute() string {
	var parts []string
	for i, p := range g.pushers {
		parts = append(parts, fmt.Sprintf("%s: %s", g.routes[i], p.stats()))
	}
	return strings.Join(parts, "; ")
}

// windows says, per subscription, the push window, the pushes in flight and
// the messages pulled but not acked.
func (g *pushGroup) windows() string {
	var parts []string
	for i, p := range g.pushers {
		parts = append(parts, fmt.Sprintf("%s window %d, in flight %d, pending %d", g.routes[i], p.Window(), p.Active(), p.pending()))
	}
	return strings.Join(parts, "; ")
}

func (g *pushGroup) sum(f func(*pusher) int) int {
	n := 0
	for _, p := range g.pushers {
		n += f(p)
	}
	return n
}

func (g *pushGroup) ackedCount() int { return g.sum((*pusher).ackedCount) }
func (g *pushGroup) pending() int    { return g.sum((*pusher).pending) }
func (g *pushGroup) inflightTo(name string) int {
	return g.sum(func(p *pusher) int { return p.inflightTo(name) })
}
func (g *pushGroup) Active() int64 {
	return int64(g.sum(func(p *pusher) int { return int(p.Active()) }))
}
func (g *pushGroup) idleFor(d time.Duration) bool {
	for _, p := range g.pushers {
		if !p.idleFor(d) {
			return false
		}
	}
	return true
}
