package gcefake

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// Quota groups, as Compute counts its API rate quotas (Compute Engine docs, "Compute Engine
// rate quotas and system limits"): every API method belongs to one group, and each group has
// its own limit per project, counted in synchronized wall-clock minutes.
const (
	// GroupWrites holds snapshots.delete: Compute counts it in the global resource write
	// group ("Global resource write requests per minute").
	GroupWrites = "writes"
	// GroupReads holds snapshots.get and snapshots.list ("Read requests per minute").
	GroupReads = "reads"
	// GroupOperationReads holds globalOperations.get and globalOperations.wait, which
	// Compute counts apart from other reads ("Operation read requests per minute").
	GroupOperationReads = "operation reads"
)

// Groups lists the quota groups the fake counts.
var Groups = []string{GroupWrites, GroupReads, GroupOperationReads}

// groupOf is the quota group of an API method (Call.Method); "" for none.
func groupOf(method string) string {
	switch method {
	case "snapshots.delete":
		return GroupWrites
	case "snapshots.get", "snapshots.list":
		return GroupReads
	case "globalOperations.get", "globalOperations.wait":
		return GroupOperationReads
	}
	return ""
}

func validGroup(group string) bool { return slices.Contains(Groups, group) }

// quotaKey names one counter: a project's calls of one group.
type quotaKey struct{ project, group string }

// window counts the calls of one project and group admitted in one wall-clock minute.
type window struct {
	minute time.Time // the minute's start, by the Now clock
	count  int
}

// minuteOf is the synchronized wall-clock minute t falls in. Compute's windows start at
// whole minutes: a project that reaches its limit at 10:00:15 gets more at 10:01:00.
func minuteOf(t time.Time) time.Time { return t.UTC().Truncate(time.Minute) }

// minuteLabel names a minute in Stats.
func minuteLabel(t time.Time) string { return minuteOf(t).Format("2006-01-02T15:04Z") }

// limitLocked is the per-minute limit of a project's group; 0 means unlimited.
func (f *Fake) limitLocked(project, group string) int {
	if n, ok := f.quotaByProject[quotaKey{project, group}]; ok {
		return n
	}
	return f.quotaDefault[group]
}

// quotaLocked counts a call against its project's quota group and reports whether the
// quota refuses it. Refused calls are not counted: they do not use up the minute.
func (f *Fake) quotaLocked(c *Call) bool {
	group := groupOf(c.Method)
	if group == "" {
		return false
	}
	limit := f.limitLocked(c.Project, group)
	if limit <= 0 {
		return false
	}
	k := quotaKey{c.Project, group}
	w := f.windows[k]
	if m := minuteOf(c.Time); !w.minute.Equal(m) {
		w = window{minute: m}
	}
	if w.count >= limit {
		f.windows[k] = w
		return true
	}
	w.count++
	f.windows[k] = w
	return false
}

// SetQuota sets how many calls of a quota group (GroupWrites, GroupReads,
// GroupOperationReads) one project may make per wall-clock minute; further calls in that
// minute answer 403 rateLimitExceeded, as Compute does. perMinute 0 means unlimited.
// project "" sets it for every project: the default, replacing the settings of single
// projects for that group. A change applies from the next call on; calls already counted
// in the current minute stay counted.
func (f *Fake) SetQuota(project, group string, perMinute int) error {
	if !validGroup(group) {
		return fmt.Errorf("gcefake: unknown quota group %q (want one of %q)", group, Groups)
	}
	if perMinute < 0 {
		return fmt.Errorf("gcefake: quota of %q must not be negative, got %d", group, perMinute)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if project == "" {
		f.quotaDefault[group] = perMinute
		for k := range f.quotaByProject {
			if k.group == group {
				delete(f.quotaByProject, k)
			}
		}
		return nil
	}
	f.quotaByProject[quotaKey{project, group}] = perMinute
	return nil
}

// Quota returns the per-minute limit of a project's quota group (0: unlimited); project ""
// returns the default.
func (f *Fake) Quota(project, group string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	if project == "" {
		return f.quotaDefault[group]
	}
	return f.limitLocked(project, group)
}

// QuotaTable is every quota setting: the default of each group and the groups set for
// single projects (per minute; 0 is unlimited).
type QuotaTable struct {
	Default  map[string]int            `json:"default"`
	Projects map[string]map[string]int `json:"projects,omitempty"`
}

// Quotas returns every quota setting.
func (f *Fake) Quotas() QuotaTable {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := QuotaTable{Default: maps.Clone(f.quotaDefault), Projects: map[string]map[string]int{}}
	for k, n := range f.quotaByProject {
		if t.Projects[k.project] == nil {
			t.Projects[k.project] = map[string]int{}
		}
		t.Projects[k.project][k.group] = n
	}
	return t
}
