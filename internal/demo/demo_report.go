package demo

import (
	"context"
	"fmt"
	"github.com/snapsweep/snapsweep/ops"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
)

// Report is the demo's final report (also its -o json output).
type Report struct {
	Seed     uint64 `json:"seed"`
	Sessions int    `json:"sessions"`
	Tasks    int    `json:"tasks"`
	Project  string `json:"project"`
	Registry string `json:"registry"`

	// Registered counts the snapshots the jobs reported.
	Registered int `json:"registered"`
	// Deleted counts those snapsweep deleted.
	Deleted int      `json:"deleted"`
	Kept    demoKept `json:"kept"`
	// Rejected counts the messages acknowledged but never processed, by reason.
	Rejected map[string]int `json:"rejected"`
	Events   demoEvents     `json:"events"`
	Retries  demoRetries    `json:"retries"`
	// DeletesPerSecond is the deletions over the time from the first
	// cleanup becoming due to the last deletion.
	DeletesPerSecond float64     `json:"deletesPerSecond"`
	DeleteWindowMs   int64       `json:"deleteWindowMs"`
	Latency          demoLatency `json:"latency"`
	Sweep            demoSweep   `json:"sweep"`
	SessionOutcomes  []demoOut   `json:"sessionOutcomes"`
	// Verified is true when the registry and the Compute fake agree.
	// Storage is what the cleanup is worth (package cost, built-in
	// prices); Savings its one-line account, the report's last line.
	Storage   *cost.Figures `json:"storage"`
	Savings   string        `json:"savings"`
	Verified  bool          `json:"verified"`
	Problems  []string      `json:"problems,omitempty"`
	ElapsedMs int64         `json:"elapsedMs"`
	LogFile   string        `json:"logFile,omitempty"`
}

// demoKept is what was not deleted, and why.
type demoKept struct {
	Total int `json:"total"`
	// Retained: snapshots of failed tasks (the rollback path).
	Retained       int       `json:"retained"`
	FailedTasks    int       `json:"failedTasks"`
	RetainedUntil  time.Time `json:"retainedUntil,omitzero"`
	Running        int       `json:"running"`
	RunningTasks   int       `json:"runningTasks"`
	RunningExpires time.Time `json:"runningExpires,omitzero"`
	// Refused: the ownership check failed.
	Refused []demoRefusal `json:"refused"`
	// Failed: permanent delete errors (none expected).
	Failed int `json:"failed"`
	// Orphans: labelled snapshots no job reported, adopted by the sweep.
	Orphans []string `json:"orphans"`
}

type demoRefusal struct {
	Snapshot string `json:"snapshot"`
	Why      string `json:"why"`
}

type demoEvents struct {
	Published  int64 `json:"published"`
	Duplicates int64 `json:"duplicates"`
	Reordered  int64 `json:"reorderedTasks"`
	Pushes     int64 `json:"pushes"`
}

type demoRetries struct {
	// Compute answers that were retried.
	Unavailable int `json:"unavailable503"`
	InUse       int `json:"inUse"`
	Quota       int `json:"quota"`
	QuotaLimit  int `json:"quotaPerMinute"`
	DeleteRate  int `json:"deleteRate"`
	// Redeliveries are pushes answered with an error and delivered again.
	Redeliveries int64 `json:"redeliveries"`
	// ComputeCalls counts every call the fake answered.
	ComputeCalls int `json:"computeCalls"`
}

type demoLatency struct {
	Samples int   `json:"samples"`
	P50Ms   int64 `json:"p50Ms"`
	P90Ms   int64 `json:"p90Ms"`
	P99Ms   int64 `json:"p99Ms"`
	MaxMs   int64 `json:"maxMs"`
}

type demoSweep struct {
	Status         sweep.Status  `json:"status"`
	NotOK          []sweep.Check `json:"notOk,omitempty"`
	OrphansFound   int           `json:"orphansFound"`
	OrphansAdopted int           `json:"orphansAdopted"`
	Expired        int           `json:"expired"`
	Scheduled      int           `json:"scheduled"`
}

type demoOut struct {
	Session  string              `json:"session"`
	State    store.SessionState  `json:"state"`
	Outcome  store.Outcome       `json:"outcome,omitempty"`
	Snapshot map[store.State]int `json:"snapshots"`
}

// report reads the registry and the fake and builds the report.
func (d *demoRun) report(ctx context.Context, swept *sweep.Report, settled time.Time) (*Report, error) {
	rep := &Report{Seed: d.opts.Seed, Sessions: d.opts.Sessions, Tasks: d.opts.Tasks, Project: d.plan.Project,
		Registry: "memory", Rejected: map[string]int{}, LogFile: d.opts.LogPath,
		Kept: demoKept{Refused: []demoRefusal{}, Orphans: []string{}}}
	if _, ok := d.reg.(*store.Memory); !ok {
		rep.Registry = "firestore"
	}
	var all []store.Snapshot
	for _, s := range d.plan.Sessions {
		q := store.Query{SessionID: s.ID, OrderByCreated: true, Limit: 300}
		for {
			page, err := d.reg.ListSnapshots(ctx, q)
			if err != nil {
				return nil, fmt.Errorf("list snapshots: %w", err)
			}
			all = append(all, page.Snapshots...)
			if page.Next == "" {
				break
			}
			q.After = page.Next
		}
	}
	failedTasks, runningTasks := map[string]bool{}, map[string]bool{}
	var latencies []time.Duration
	var firstDue, lastDeleted time.Time
	for _, s := range all {
		if s.Orphan {
			rep.Kept.Orphans = append(rep.Kept.Orphans, s.Key().String())
			continue
		}
		rep.Registered++
		tk := s.SessionID + "/" + s.TaskID
		switch s.State {
		case store.Deleted:
			rep.Deleted++
			// Latency: from the moment the service knew both that the
			// snapshot exists and that its task succeeded.
			created, ok1 := d.bridge.appliedAt(eventKey(events.SnapshotCreated, s.SessionID, s.Key().String()))
			done, ok2 := d.bridge.appliedAt(eventKey(events.TaskCompleted, s.SessionID, s.TaskID))
			if ok1 && ok2 && !s.DeletedAt.IsZero() {
				due := created
				if done.After(due) {
					due = done
				}
				latencies = append(latencies, max(s.DeletedAt.Sub(due), 0))
				if firstDue.IsZero() || due.Before(firstDue) {
					firstDue = due
				}
			}
			if s.DeletedAt.After(lastDeleted) {
				lastDeleted = s.DeletedAt
			}
		case store.Retained:
			rep.Kept.Retained++
			failedTasks[tk] = true
			if s.ExpiresAt.After(rep.Kept.RetainedUntil) {
				rep.Kept.RetainedUntil = s.ExpiresAt
			}
		case store.Active:
			rep.Kept.Running++
			runningTasks[tk] = true
			if rep.Kept.RunningExpires.IsZero() || s.ExpiresAt.Before(rep.Kept.RunningExpires) {
				rep.Kept.RunningExpires = s.ExpiresAt
			}
		case store.Refused:
			rep.Kept.Refused = append(rep.Kept.Refused, demoRefusal{Snapshot: s.Key().String(), Why: s.Error})
		case store.Failed:
			rep.Kept.Failed++
		}
	}
	rep.Kept.FailedTasks, rep.Kept.RunningTasks = len(failedTasks), len(runningTasks)
	rep.Kept.Total = rep.Registered - rep.Deleted + len(rep.Kept.Orphans)
	rep.Latency = latencySummary(latencies)
	if rep.Deleted > 0 && lastDeleted.After(firstDue) && !firstDue.IsZero() {
		win := lastDeleted.Sub(firstDue)
		rep.DeleteWindowMs = win.Milliseconds()
		rep.DeletesPerSecond = math.Round(float64(rep.Deleted)/win.Seconds()*10) / 10
	}

	rej, err := d.reg.ListRejected(ctx, 200)
	if err != nil {
		return nil, fmt.Errorf("list rejected: %w", err)
	}
	for _, r := range rej {
		if !r.ReceivedAt.Before(d.start) {
			rep.Rejected[r.Reason]++
		}
	}
	rep.Events = demoEvents{Published: d.stats.Events.Load(), Duplicates: d.stats.Duplicates.Load(),
		Reordered: d.stats.Reordered.Load(), Pushes: d.bridge.deliveries()}
	st := d.fake.Stats()
	rep.Retries = demoRetries{Unavailable: st.ByStatus[http.StatusServiceUnavailable], Quota: st.QuotaErrors,
		QuotaLimit: d.opts.Faults.QuotaPerMinute, DeleteRate: d.opts.Faults.DeleteRate,
		Redeliveries: d.bridge.nacks(), ComputeCalls: st.Calls}
	for _, c := range d.fake.Calls() {
		if c.Method == "snapshots.delete" && c.Status == http.StatusBadRequest {
			rep.Retries.InUse++
		}
	}

	rep.Sweep = demoSweep{Status: swept.Status, OrphansFound: swept.Orphans.Found, OrphansAdopted: swept.Orphans.Adopted,
		Expired: swept.Expired.Found, Scheduled: swept.Used}
	for _, c := range swept.Checks {
		if c.Status != sweep.OK {
			rep.Sweep.NotOK = append(rep.Sweep.NotOK, c)
		}
	}
	for _, s := range d.plan.Sessions {
		o := demoOut{Session: s.ID, Snapshot: map[store.State]int{}}
		if sess, err := d.reg.GetSession(ctx, s.ID); err == nil {
			o.State, o.Outcome = sess.State, sess.Outcome
		}
		for _, r := range all {
			if r.SessionID == s.ID && !r.Orphan {
				o.Snapshot[r.State]++
			}
		}
		rep.SessionOutcomes = append(rep.SessionOutcomes, o)
	}
	c := cost.Compute(all, cost.DefaultPrices(), time.Now())
	rep.Storage, rep.Savings = &c.Overall, cost.Line(c.Overall, c.Currency)
	rep.Problems = append(d.verify(all), d.verifySizes(all, c)...)
	rep.Verified = len(rep.Problems) == 0
	rep.ElapsedMs = time.Since(d.start).Milliseconds()
	return rep, nil
}

// verify checks the registry against the Compute fake and the plan: every
// deleted record was deleted exactly once, every kept one still exists,
// and each snapshot ended where the rules say.
func (d *demoRun) verify(all []store.Snapshot) []string {
	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	p := d.plan.Project
	byName := map[string]store.Snapshot{}
	for _, s := range all {
		byName[s.Name] = s
		n := d.fake.SuccessfulDeletes(s.Project, s.Name)
		switch {
		case n > 1:
			bad("%s deleted %d times", s.Key(), n)
		case s.State == store.Deleted && (n != 1 || d.fake.Exists(s.Project, s.Name)):
			bad("%s is deleted in the registry, but Compute deleted it %d times (exists=%v)", s.Key(), n, d.fake.Exists(s.Project, s.Name))
		case s.State != store.Deleted && (n != 0 || !d.fake.Exists(s.Project, s.Name)):
			bad("%s is %s in the registry, but Compute deleted it %d times (exists=%v)", s.Key(), s.State, n, d.fake.Exists(s.Project, s.Name))
		}
	}
	for _, t := range d.plan.tasks() {
		for _, s := range t.Snapshots {
			want := map[string]store.State{outcomeSucceeded: store.Deleted, outcomeFailed: store.Retained, outcomeRunning: store.Active}[t.Outcome]
			if s.WrongLabel {
				want = store.Refused
			}
			rec, ok := byName[s.Name]
			switch {
			case !ok:
				bad("%s/%s was never registered", p, s.Name)
			case rec.State != want:
				bad("%s/%s of a %s task is %s, want %s", p, s.Name, t.Outcome, rec.State, want)
			}
		}
	}
	if st := d.fake.Stats(); st.Deleted != countState(all, store.Deleted) {
		bad("Compute deleted %d snapshots, the registry says %d", st.Deleted, countState(all, store.Deleted))
	}
	if !d.fake.Exists(p, d.plan.Orphan) {
		bad("the orphan %s/%s was deleted", p, d.plan.Orphan)
	}
	return problems
}

// verifySizes checks the recorded sizes, and so the savings line, against
// the Compute fake: every deleted snapshot's size is the one the fake gave
// the snapshot of that Compute id, every kept one's what the fake reports now.
func (d *demoRun) verifySizes(all []store.Snapshot, c *cost.Report) []string {
	var problems []string
	var deleted int64
	for _, s := range all {
		if s.Size == nil {
			if s.State == store.Deleted && s.DeletedBy == "snapsweep" {
				problems = append(problems, fmt.Sprintf("%s was deleted without its size read", s.Key()))
			}
			continue
		}
		// A deleted snapshot's size is the one the fake gave its Compute
		// id; a kept one (its id is not always known: the sweep measured
		// it, no delete read it) is what the fake reports now.
		var want gcefake.Size
		fs, exists := d.fake.Snapshot(s.Project, s.Name)
		id, err := strconv.ParseUint(s.ComputeID, 10, 64)
		switch {
		case exists && (err != nil || fs.ID == id):
			want = fs.Size
		case err == nil:
			want = gcefake.DefaultSize(id)
		default:
			problems = append(problems, fmt.Sprintf("%s: a size, but neither a Compute id nor a snapshot in the fake", s.Key()))
			continue
		}
		if s.Size.StorageBytes != want.StorageBytes || s.Size.Type != want.SnapshotType || !slices.Equal(s.Size.Locations, want.Locations) {
			problems = append(problems, fmt.Sprintf("%s: recorded %d bytes %s %v, the fake says %d %s %v", s.Key(),
				s.Size.StorageBytes, s.Size.Type, s.Size.Locations, want.StorageBytes, want.SnapshotType, want.Locations))
		}
		if s.State == store.Deleted && s.DeletedBy == "snapsweep" {
			deleted += want.StorageBytes
		}
	}
	if deleted != c.Overall.Deleted.Bytes {
		problems = append(problems, fmt.Sprintf("savings line: deleted up to %d bytes, the fake's sizes sum to %d", c.Overall.Deleted.Bytes, deleted))
	}
	return problems
}

func countState(all []store.Snapshot, st store.State) int {
	n := 0
	for _, s := range all {
		if s.State == st {
			n++
		}
	}
	return n
}

// latencySummary returns nearest-rank percentiles of ds.
func latencySummary(ds []time.Duration) demoLatency {
	if len(ds) == 0 {
		return demoLatency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) int64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return s[max(0, min(i, len(s)-1))].Milliseconds()
	}
	return demoLatency{Samples: len(s), P50Ms: rank(0.50), P90Ms: rank(0.90), P99Ms: rank(0.99), MaxMs: s[len(s)-1].Milliseconds()}
}

func (d *demoRun) printHeader(registry string) {
	f := d.opts.Faults
	w := d.opts.Progress
	fmt.Fprintf(w, "snapsweep demo: %d sessions × %d tasks (seed %d), project %s, registry: %s\n",
		d.opts.Sessions, d.opts.Tasks, d.opts.Seed, d.plan.Project, registry)
	fmt.Fprintf(w, "Compute fake: delete operations take %s, calls %s–%s, %.0f%% of calls fail with 503, a few snapshots in use, quota %d deletes/min (service rate %d/s)\n\n",
		f.OpLatency, f.CallMin, f.CallMax, f.FailureRate*100, f.QuotaPerMinute, f.DeleteRate)
}

func secs(ms int64) string { return fmt.Sprintf("%.2fs", float64(ms)/1000) }

func (d *demoRun) printReport(r *Report) error {
	w := d.opts.Out
	fmt.Fprintln(w)
	tw := ops.NewTable(w)
	fmt.Fprintf(tw, "registered\t%d\tsnapshots from %d tasks in %d sessions\n", r.Registered, r.Sessions*r.Tasks, r.Sessions)
	fmt.Fprintf(tw, "deleted\t%d\tsnapshots of succeeded tasks, each deleted exactly once in Compute\n", r.Deleted)
	fmt.Fprintf(tw, "kept\t%d\tand why:\n", r.Kept.Total)
	if r.Kept.Retained > 0 {
		fmt.Fprintf(tw, "  retained\t%d\t%d failed tasks: the rollback path, kept until %s (failed-task retention)\n", r.Kept.Retained, r.Kept.FailedTasks, ops.When(r.Kept.RetainedUntil))
	}
	if r.Kept.Running > 0 {
		fmt.Fprintf(tw, "  running\t%d\t%d tasks still running: kept until they finish or expire (the first at %s)\n", r.Kept.Running, r.Kept.RunningTasks, ops.When(r.Kept.RunningExpires))
	}
	for _, x := range r.Kept.Refused {
		fmt.Fprintf(tw, "  refused\t1\t%s: %s\n", x.Snapshot, x.Why)
	}
	if r.Kept.Failed > 0 {
		fmt.Fprintf(tw, "  failed\t%d\tpermanent delete errors\n", r.Kept.Failed)
	}
	for _, o := range r.Kept.Orphans {
		fmt.Fprintf(tw, "  orphan\t1\t%s: labelled but never reported, of a known session; adopted by the sweep after the grace period, cleaned when it expires\n", o)
	}
	var rej []string
	total := 0
	for k, v := range r.Rejected {
		rej = append(rej, fmt.Sprintf("%s %d", k, v))
		total += v
	}
	slices.Sort(rej)
	fmt.Fprintf(tw, "rejected\t%d\t%s (acknowledged, recorded, never retried)\n", total, strings.Join(rej, ", "))
	fmt.Fprintf(tw, "events\t%d\t%d sent twice, %d tasks reported out of order; %d pushes\n", r.Events.Published, r.Events.Duplicates, r.Events.Reordered, r.Events.Pushes)
	fmt.Fprintf(tw, "retries\t\tCompute: %d × 503, %d × in use, %d × quota (limit %d/min, service rate %d/s); %d push redeliveries\n",
		r.Retries.Unavailable, r.Retries.InUse, r.Retries.Quota, r.Retries.QuotaLimit, r.Retries.DeleteRate, r.Retries.Redeliveries)
	fmt.Fprintf(tw, "throughput\t%.1f\tdeletes/s (%d deletions in %s)\n", r.DeletesPerSecond, r.Deleted, secs(r.DeleteWindowMs))
	fmt.Fprintf(tw, "latency\t\ttask completed → snapshot deleted: p50 %s, p90 %s, p99 %s, max %s (%d snapshots)\n",
		secs(r.Latency.P50Ms), secs(r.Latency.P90Ms), secs(r.Latency.P99Ms), secs(r.Latency.MaxMs), r.Latency.Samples)
	sw := fmt.Sprintf("%s; orphans found %d, adopted %d; expired %d", r.Sweep.Status, r.Sweep.OrphansFound, r.Sweep.OrphansAdopted, r.Sweep.Expired)
	for _, c := range r.Sweep.NotOK {
		sw += fmt.Sprintf("; %s %s: %s", c.Name, c.Status, c.Reason)
	}
	fmt.Fprintf(tw, "sweep\t\t%s\n", sw)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = ops.NewTable(w)
	fmt.Fprintln(tw, "SESSION\tSTATE\tOUTCOME\tDELETED\tRETAINED\tRUNNING\tREFUSED")
	for _, o := range r.SessionOutcomes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", o.Session, o.State, ops.Dash(string(o.Outcome)),
			o.Snapshot[store.Deleted], o.Snapshot[store.Retained], o.Snapshot[store.Active], o.Snapshot[store.Refused])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if r.Verified {
		fmt.Fprintf(w, "verified: the Compute fake agrees — %d deleted exactly once, none twice, all %d kept still exist\n", r.Deleted, r.Kept.Total)
	} else {
		fmt.Fprintf(w, "NOT VERIFIED: %s\n", strings.Join(r.Problems, "; "))
	}
	fmt.Fprintf(w, "finished in %s", secs(r.ElapsedMs))
	if r.LogFile != "" {
		fmt.Fprintf(w, "; the service's logs: %s", r.LogFile)
	}
	fmt.Fprintln(w)
	// Checked against the fake's sizes (verifySizes) when verified.
	fmt.Fprintf(w, "savings (list prices, storage freed is an upper bound): %s\n", r.Savings)
	return nil
}

func (d *demoRun) printServing(addr, computeURL, registry string) {
	w := d.opts.Out
	base := "http://" + addr
	fmt.Fprintf(w, "\nserving on %s (Ctrl-C to stop). Try:\n", base)
	fmt.Fprintf(w, "  curl -s %s/status\n", base)
	fmt.Fprintf(w, "  snapsweep health --url %s\n", base)
	fmt.Fprintf(w, "  snapsweep sweep --url %s --dry-run\n", base)
	if strings.HasPrefix(registry, "Firestore") {
		fmt.Fprintf(w, "  snapsweep sessions list --project %s\n", demoProject)
		fmt.Fprintf(w, "  snapsweep orphans --project %s --compute-endpoint %s\n", demoProject, computeURL)
	} else {
		fmt.Fprintln(w, "  (the registry is in this process's memory: set FIRESTORE_EMULATOR_HOST to let the registry commands read it)")
	}
	fmt.Fprintf(w, "  Compute fake: %s (POST /fake/snapshots, GET /fake/calls); Pub/Sub (pstest): PUBSUB_EMULATOR_HOST=%s\n", computeURL, d.pstest.Addr)
}
