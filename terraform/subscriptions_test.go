package terraform_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"

	"github.com/snapsweep/snapsweep/bus"
)

// evalLocals evaluates the module's local values that depend only on
// variables (vars, else their defaults) and on one another, as Terraform
// would for those inputs. Locals that read resources or data sources are
// left out.
func evalLocals(m *module, vars map[string]cty.Value) map[string]cty.Value {
	all := map[string]cty.Value{}
	for _, v := range m.blocksOf("variable") {
		if attr, ok := v.Body.Attributes["default"]; ok {
			if val, diags := attr.Expr.Value(nil); !diags.HasErrors() {
				all[v.Labels[0]] = val
			}
		}
	}
	for k, v := range vars {
		all[k] = v
	}
	funcs := map[string]function.Function{
		"merge": stdlib.MergeFunc, "distinct": stdlib.DistinctFunc, "length": stdlib.LengthFunc,
		"coalesce": stdlib.CoalesceFunc, "floor": stdlib.FloorFunc,
	}
	exprs := map[string]hcl.Expression{}
	for _, b := range m.blocksOf("locals") {
		for name, attr := range b.Body.Attributes {
			exprs[name] = attr.Expr
		}
	}
	locals := map[string]cty.Value{}
	// A local evaluates once the locals it reads have: rounds until none
	// more does.
	for progress := true; progress; {
		progress = false
		ctx := &hcl.EvalContext{Variables: map[string]cty.Value{"var": cty.ObjectVal(all), "local": cty.ObjectVal(locals)}, Functions: funcs}
		for name, e := range exprs {
			if _, done := locals[name]; done {
				continue
			}
			if v, diags := e.Value(ctx); !diags.HasErrors() && v.IsWhollyKnown() {
				locals[name] = v
				progress = true
			}
		}
	}
	return locals
}

// pushSubscription is one entry of local.push_subscriptions.
type pushSubscription struct {
	Stream, Name, Filter string // Filter "" for none
}

func pushSubscriptions(t *testing.T, m *module, vars map[string]cty.Value) map[string]pushSubscription {
	t.Helper()
	v, ok := evalLocals(m, vars)["push_subscriptions"]
	if !ok {
		t.Fatal("local.push_subscriptions does not evaluate from the variables alone")
	}
	out := map[string]pushSubscription{}
	for it := v.ElementIterator(); it.Next(); {
		k, s := it.Element()
		str := func(attr string) string {
			a := s.GetAttr(attr)
			if a.IsNull() {
				return ""
			}
			return a.AsString()
		}
		out[k.AsString()] = pushSubscription{Stream: str("stream"), Name: str("name"), Filter: str("filter")}
	}
	return out
}

// TestCleanupSubscriptionPerProject: every managed project gets exactly
// one cleanup push subscription, filtered on its project as the service
// sets the attribute (bus.ProjectFilter); the catch-all takes the messages
// without it (bus.UnroutedFilter); migration events keep one unfiltered
// subscription. Every filter fits Pub/Sub's 256 bytes.
func TestCleanupSubscriptionPerProject(t *testing.T) {
	t.Parallel()
	m, err := parseDir(".")
	if err != nil {
		t.Fatal(err)
	}
	longest := "p" + strings.Repeat("x", 28) + "z" // 30 characters, the most a project id has
	tests := []struct {
		name     string
		managed  []string
		projects []string // the projects that get a subscription
	}{
		{"two projects", []string{"proj-alpha", "proj-beta"}, []string{"proj-alpha", "proj-beta"}},
		{"none given: the host project", nil, []string{"host-proj"}},
		{"duplicates", []string{"proj-alpha", "proj-alpha"}, []string{"proj-alpha"}},
		{"longest project id", []string{longest}, []string{longest}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			managed := cty.ListValEmpty(cty.String)
			if len(tt.managed) > 0 {
				var vals []cty.Value
				for _, p := range tt.managed {
					vals = append(vals, cty.StringVal(p))
				}
				managed = cty.ListVal(vals)
			}
			got := pushSubscriptions(t, m, map[string]cty.Value{"project_id": cty.StringVal("host-proj"), "managed_projects": managed})
			want := map[string]pushSubscription{
				"events":           {Stream: "events", Name: "migration-events-push"},
				"cleanup-unrouted": {Stream: "cleanup", Name: "snapshot-cleanup-push-unrouted", Filter: bus.UnroutedFilter},
			}
			for _, p := range tt.projects {
				want["cleanup-"+p] = pushSubscription{Stream: "cleanup", Name: "snapshot-cleanup-push-" + p, Filter: bus.ProjectFilter(p)}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("local.push_subscriptions (-want +got):\n%s", diff)
			}
			for k, s := range got {
				if len(s.Filter) > 256 {
					t.Errorf("%s: filter of %d bytes, Pub/Sub takes at most 256", k, len(s.Filter))
				}
			}
		})
	}
}

// TestPushSubscriptionWiring: the push subscriptions, their filters,
// dead-letter topics and the service agent's grant on each come from
// local.push_subscriptions, so that a project's subscription cannot be made
// without its dead-letter wiring.
func TestPushSubscriptionWiring(t *testing.T) {
	t.Parallel()
	m, err := parseDir(".")
	if err != nil {
		t.Fatal(err)
	}
	refs := func(e hclsyntax.Expression) []string {
		var out []string
		for _, tr := range hclsyntax.Variables(e) {
			var parts []string
			for _, step := range tr {
				switch s := step.(type) {
				case hcl.TraverseRoot:
					parts = append(parts, s.Name)
				case hcl.TraverseAttr:
					parts = append(parts, s.Name)
				}
			}
			out = append(out, strings.Join(parts, "."))
		}
		return out
	}
	want := func(b *hclsyntax.Block, body *hclsyntax.Body, attr string, ref string) {
		t.Helper()
		a, ok := body.Attributes[attr]
		if !ok {
			t.Errorf("%s: %s.%s has no %s", pos(b), b.Labels[0], b.Labels[1], attr)
			return
		}
		if got := refs(a.Expr); !slices.ContainsFunc(got, func(r string) bool { return r == ref || strings.HasPrefix(r, ref+".") }) {
			t.Errorf("%s: %s.%s: %s reads %v, want %s", pos(b), b.Labels[0], b.Labels[1], attr, got, ref)
		}
	}
	var push, subscriber *hclsyntax.Block
	for _, b := range m.resources("google_pubsub_subscription") {
		if b.Labels[1] == "push" {
			push = b
		}
	}
	for _, b := range m.resources("google_pubsub_subscription_iam_member") {
		if b.Labels[1] == "push_subscriber" {
			subscriber = b
		}
	}
	if push == nil || subscriber == nil {
		t.Fatal("want google_pubsub_subscription.push and google_pubsub_subscription_iam_member.push_subscriber")
	}
	want(push, push.Body, "for_each", "local.push_subscriptions")
	want(push, push.Body, "filter", "each.value.filter")
	want(push, push.Body, "name", "each.value.name")
	if dl := blockOf(push.Body, "dead_letter_policy"); dl == nil {
		t.Errorf("%s: push subscriptions without dead_letter_policy", pos(push))
	} else {
		want(push, dl.Body, "dead_letter_topic", "google_pubsub_topic.dead_letter")
	}
	want(subscriber, subscriber.Body, "for_each", "local.push_subscriptions")
	want(subscriber, subscriber.Body, "subscription", "google_pubsub_subscription.push")
}
