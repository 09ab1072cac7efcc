package chaos

import (
	"slices"
	"testing"
)

func TestWorstInstanceMinute(t *testing.T) {
	t.Parallel()
	counts := map[string]map[string]map[string]int{
		"serve-0": {
			"bench-a": {"2026-12-02T01:36Z": 2, "2026-12-02T01:37Z": 1},
			"bench-b": {"2026-12-02T01:36Z": 9},
		},
		"serve-1": {
			"bench-a": {"2026-12-02T01:37Z": 3},
		},
	}
	tests := []struct {
		name      string
		counts    map[string]map[string]map[string]int
		project   string
		want      int
		wantWhere string
	}{
		// serve-0 has 3 in bench-a over two minutes, serve-1 3 in one:
		// the worst is serve-1's minute, not an instance's sum or a
		// minute's sum over instances (01:37 has 4 in all).
		{"one instance's one minute", counts, "bench-a", 3, "serve-1 01:37"},
		{"other projects do not count", counts, "bench-b", 9, "serve-0 01:36"},
		{"no errors", counts, "bench-c", 0, ""},
		{"nothing counted", nil, "bench-a", 0, ""},
		{"ties go to the first instance", map[string]map[string]map[string]int{
			"serve-1": {"p": {"2026-12-02T01:36Z": 2}},
			"serve-0": {"p": {"2026-12-02T01:37Z": 2}},
		}, "p", 2, "serve-0 01:37"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, where := worstInstanceMinute(tt.counts, tt.project)
			if n != tt.want || where != tt.wantWhere {
				t.Errorf("worstInstanceMinute = %d %q, want %d %q", n, where, tt.want, tt.wantWhere)
			}
		})
	}
}

// TestCleanupRouteAccept: each project's route takes its own messages, the
// catch-all those without the attribute, and a project without a route
// reaches none (as with Pub/Sub filters; docs/cleanup.md).
func TestCleanupRouteAccept(t *testing.T) {
	t.Parallel()
	routes := []cleanupRoute{{project: "a"}, {project: "b"}, {project: ""}}
	tests := []struct {
		name  string
		attrs map[string]string
		want  []string // routes that accept
	}{
		{"project a", map[string]string{"project": "a", "reason": "task-completed"}, []string{"a"}},
		{"project b", map[string]string{"project": "b"}, []string{"b"}},
		{"no attribute", map[string]string{"sessionId": "s"}, []string{"unrouted"}},
		{"no attributes at all", nil, []string{"unrouted"}},
		{"empty project", map[string]string{"project": ""}, nil},
		{"project without a route", map[string]string{"project": "c"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, r := range routes {
				if r.accept(tt.attrs) {
					got = append(got, r.String())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("accepted by %v, want %v", got, tt.want)
			}
		})
	}
}
