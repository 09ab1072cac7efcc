package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/store"
)

// Invariant is one checked property of the run's end state.
type Invariant struct {
	Name     string   `json:"name"`
	OK       bool     `json:"ok"`
	Detail   string   `json:"detail"`
	Problems []string `json:"problems,omitempty"`
}

func (iv Invariant) String() string {
	verdict := "PASS"
	if !iv.OK {
		verdict = "FAIL"
	}
	s := fmt.Sprintf("%s %-20s %s", verdict, iv.Name, iv.Detail)
	for i, p := range iv.Problems {
		if i == 10 {
			s += fmt.Sprintf("\n       … and %d more", len(iv.Problems)-10)
			break
		}
		s += "\n       " + p
	}
	return s
}

// fakeFacts is one entry of the fake's GET /fake/snapshots: gcefake's
// own type, read over HTTP from the `snapsweep fake-compute` process.
type fakeFacts = gcefake.Facts

// endState is everything the invariants are judged on.
type endState struct {
	facts    map[string]fakeFacts
	records  map[string]*store.Snapshot // by name, for the stream's snapshots
	listed   []string                   // every snapshot the registry holds
	tasks    map[string]*store.Task     // by session/task
	sessions map[string]*store.Session
	counts   map[store.State]int64
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// readEndState reads the fake's facts and the registry (through the same
// store code the service uses, on the Firestore emulator).
func readEndState(ctx context.Context, fakeURL string, reg *store.Firestore, w *Workload) (*endState, error) {
	es := &endState{facts: map[string]fakeFacts{}, records: map[string]*store.Snapshot{},
		tasks: map[string]*store.Task{}, sessions: map[string]*store.Session{}}
	var facts []fakeFacts
	if err := getJSON(ctx, fakeURL+"/fake/snapshots?project="+w.Project, &facts); err != nil {
		return nil, fmt.Errorf("read the fake: %w", err)
	}
	for _, f := range facts {
		es.facts[f.Name] = f
	}

	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for _, sn := range w.Snaps {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rec, err := reg.GetSnapshot(ctx, store.Key{Project: w.Project, Name: sn.Name})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				errs = append(errs, err)
			default:
				es.records[sn.Name] = rec
			}
		})
	}
	for _, t := range w.Tasks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			rec, err := reg.GetTask(ctx, store.TaskKey{SessionID: t.Session, TaskID: t.ID})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				errs = append(errs, err)
			default:
				es.tasks[t.Session+"/"+t.ID] = rec
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("read the registry: %w", err)
	}
	for _, s := range w.Sessions {
		rec, err := reg.GetSession(ctx, s)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("read session %s: %w", s, err)
		}
		if err == nil {
			es.sessions[s] = rec
		}
	}
	q := store.Query{OrderByCreated: true, Limit: 500}
	for {
		page, err := reg.ListSnapshots(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("list the registry: %w", err)
		}
		for _, s := range page.Snapshots {
			es.listed = append(es.listed, s.Project+"/"+s.Name)
		}
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	counts, err := reg.CountByState(ctx)
	if err != nil {
		return nil, fmt.Errorf("count the registry: %w", err)
	}
	es.counts = counts
	return es, nil
}

func (es *endState) state(name string) store.State {
	if r := es.records[name]; r != nil {
		return r.State
	}
	return "(unregistered)"
}

// checkInvariants judges the end state against the workload.
func checkInvariants(w *Workload, es *endState, instances []*instance, rssLimitMB int, evAcked, evPublished int) []Invariant {
	var out []Invariant

	// 1. Every eligible snapshot deleted.
	{
		iv := Invariant{Name: "eligible-deleted"}
		n, gone, recorded, inUse := 0, 0, 0, 0
		for _, sn := range w.Snaps {
			if !sn.Eligible() {
				continue
			}
			n++
			f := es.facts[sn.Name]
			st := es.state(sn.Name)
			if !f.Exists {
				gone++
			}
			if st == store.Deleted {
				recorded++
			}
			if sn.InUse > 0 && !f.Exists {
				inUse++
			}
			if f.Exists || st != store.Deleted {
				iv.Problems = append(iv.Problems, fmt.Sprintf("%s (task %s/%s %s): in Compute exists=%v status=%s deleteCalls=%d; registry %s",
					sn.Name, sn.Session, sn.Task, sn.Outcome, f.Exists, f.Status, f.DeleteCalls, st))
			}
		}
		iv.OK = len(iv.Problems) == 0 && n > 0
		iv.Detail = fmt.Sprintf("%d/%d eligible snapshots (succeeded task, right label) gone from Compute, %d/%d recorded deleted; %d of them were in use at first",
			gone, n, recorded, n, inUse)
		out = append(out, iv)
	}

	// 2. Nothing the rules protect was deleted, or even sent a delete call.
	{
		iv := Invariant{Name: "protected-untouched"}
		running, failed, wrong, calls, kept := 0, 0, 0, 0, 0
		for _, sn := range w.Snaps {
			if sn.Eligible() || sn.Undecided() || sn.JobDeleted {
				continue
			}
			switch {
			case sn.WrongLabel != "":
				wrong++
			case sn.Outcome == Failed:
				failed++
			default:
				running++
			}
			f := es.facts[sn.Name]
			calls += f.DeleteCalls
			if f.Exists && f.SuccessfulDeletes == 0 {
				kept++
			}
			if !f.Exists || f.SuccessfulDeletes > 0 || f.DeleteCalls > 0 {
				iv.Problems = append(iv.Problems, fmt.Sprintf("%s (task %s %s, label %q): in Compute exists=%v, %d delete calls, %d successful deletes",
					sn.Name, sn.Task, sn.Outcome, sn.WrongLabel, f.Exists, f.DeleteCalls, f.SuccessfulDeletes))
			}
		}
		iv.OK = len(iv.Problems) == 0
		iv.Detail = fmt.Sprintf("%d/%d protected snapshots still in Compute, %d delete calls on them: %d of running tasks, %d of failed tasks in retention, %d with a wrong or missing ownership label",
			kept, running+failed+wrong, calls, running, failed, wrong)
		out = append(out, iv)
	}

	// 3. At most one successful delete per snapshot.
	{
		iv := Invariant{Name: "at-most-one-delete"}
		deleted, calls, retried, maxDel, quota := 0, 0, 0, 0, 0
		for _, f := range es.facts {
			calls += f.DeleteCalls
			quota += f.QuotaRejected
			if f.DeleteCalls > 1 {
				retried++
			}
			if f.SuccessfulDeletes > 0 {
				deleted++
			}
			maxDel = max(maxDel, f.SuccessfulDeletes)
			if f.SuccessfulDeletes > 1 {
				iv.Problems = append(iv.Problems, fmt.Sprintf("%s deleted %d times (%d delete calls)", f.Name, f.SuccessfulDeletes, f.DeleteCalls))
			}
		}
		slices.Sort(iv.Problems)
		iv.OK = len(iv.Problems) == 0
		iv.Detail = fmt.Sprintf("%d snapshots deleted, at most %d successful delete of one; %d delete calls (%d over quota), %d snapshots needed more than one call",
			deleted, maxDel, calls, quota, retried)
		out = append(out, iv)
	}

	// 4. Nothing left half-done.
	{
		iv := Invariant{Name: "nothing-stuck"}
		var parts []string
		for _, st := range store.States() {
			if n := es.counts[st]; n > 0 || st == store.CleanupPending || st == store.Deleting {
				parts = append(parts, fmt.Sprintf("%s=%d", st, n))
			}
		}
		for _, sn := range w.Snaps {
			if st := es.state(sn.Name); st == store.CleanupPending || st == store.Deleting {
				r := es.records[sn.Name]
				iv.Problems = append(iv.Problems, fmt.Sprintf("%s %s since %s (attempt %d, lease owner %q until %s, operation %q, error %q)",
					sn.Name, st, r.UpdatedAt.Format("15:04:05.000"), r.Attempt, r.LeaseOwner, r.LeaseUntil.Format("15:04:05"), r.Operation, r.Error))
			}
		}
		iv.OK = es.counts[store.CleanupPending] == 0 && es.counts[store.Deleting] == 0
		iv.Detail = "registry by state: " + strings.Join(parts, " ")
		out = append(out, iv)
	}

	// 5. No event lost: the registry holds exactly the stream's snapshots,
	// each in the state the rules give it, and every task and session as
	// the stream says.
	{
		iv := Invariant{Name: "no-event-lost"}
		want := map[string]bool{}
		for _, sn := range w.Snaps {
			want[w.Project+"/"+sn.Name] = true
		}
		got := map[string]bool{}
		extra := 0
		for _, k := range es.listed {
			got[k] = true
			if !want[k] {
				extra++
				iv.Problems = append(iv.Problems, "registry holds "+k+", which no event named")
			}
		}
		missing, rightState := 0, 0
		for _, sn := range w.Snaps {
			if !got[w.Project+"/"+sn.Name] {
				missing++
				iv.Problems = append(iv.Problems, "snapshot "+sn.Name+" never registered")
				continue
			}
			if st := es.state(sn.Name); st == sn.WantState() || (sn.Undecided() && st == store.Deleted) {
				rightState++
			} else {
				iv.Problems = append(iv.Problems, fmt.Sprintf("snapshot %s (task %s %s, label %q, job-deleted %v): state %s, want %s",
					sn.Name, sn.Task, sn.Outcome, sn.WrongLabel, sn.JobDeleted, st, sn.WantState()))
			}
		}
		rightTasks := 0
		byState := map[store.TaskState]int{}
		for _, t := range w.Tasks {
			rec := es.tasks[t.Session+"/"+t.ID]
			switch {
			case rec == nil:
				iv.Problems = append(iv.Problems, "task "+t.Session+"/"+t.ID+" never recorded")
			case rec.State != t.Outcome.TaskState():
				iv.Problems = append(iv.Problems, fmt.Sprintf("task %s/%s (%s): state %s, want %s", t.Session, t.ID, t.Outcome, rec.State, t.Outcome.TaskState()))
			default:
				rightTasks++
				byState[rec.State]++
			}
		}
		completed := 0
		for _, s := range w.Sessions {
			if rec := es.sessions[s]; rec != nil && rec.State == store.SessionCompleted {
				completed++
			} else {
				iv.Problems = append(iv.Problems, "session "+s+" not completed")
			}
		}
		if evAcked < evPublished {
			iv.Problems = append(iv.Problems, fmt.Sprintf("only %d of %d published event messages were acknowledged", evAcked, evPublished))
		}
		iv.OK = len(iv.Problems) == 0
		iv.Detail = fmt.Sprintf("%d/%d snapshots registered (%d missing, %d extra), %d/%d in the expected state; %d/%d tasks as expected (%d succeeded, %d failed, %d running); %d/%d sessions completed; %d/%d event messages acked",
			len(w.Snaps)-missing, len(w.Snaps), missing, extra, rightState, len(w.Snaps), rightTasks, len(w.Tasks),
			byState[store.TaskSucceeded], byState[store.TaskFailed], byState[store.TaskRunning], completed, len(w.Sessions), evAcked, evPublished)
		out = append(out, iv)
	}

	// 6. Memory bounded.
	{
		iv := Invariant{Name: "memory-bounded", OK: true}
		var parts []string
		for _, in := range instances {
			peak, peaks, pids := in.peakKB()
			mbs := make([]string, len(peaks))
			for i, p := range peaks {
				mbs[i] = fmt.Sprintf("%.0f", float64(p)/1024)
			}
			part := fmt.Sprintf("%s peak %.0f MB", in.name, float64(peak)/1024)
			if len(peaks) > 1 {
				part += fmt.Sprintf(" (%d processes: %s MB)", len(peaks), strings.Join(mbs, ", "))
			}
			parts = append(parts, part)
			if peak == 0 || peak > int64(rssLimitMB)*1024 {
				iv.OK = false
				iv.Problems = append(iv.Problems, fmt.Sprintf("%s (pids %v): peak RSS %d kB, limit %d MB", in.name, pids, peak, rssLimitMB))
			}
		}
		iv.Detail = strings.Join(parts, "; ") + fmt.Sprintf("; limit %d MB (VmHWM)", rssLimitMB)
		out = append(out, iv)
	}
	return out
}

// check judges the run itself: every fault must have hit live work, or the
// invariants prove nothing.
func (c coverage) check(cfg Config) Invariant {
	iv := Invariant{Name: "faults-exercised"}
	failCode := strconv.Itoa(cfg.FailCode)
	var parts []string
	if cfg.FirestorePGID > 0 && cfg.FreezeFor > 0 {
		parts = append(parts, fmt.Sprintf("Firestore frozen %s with %d event and %d cleanup pushes in flight", c.Frozen, c.FreezeEvents, c.FreezeCleanups))
		if c.Frozen == 0 || c.FreezeEvents+c.FreezeCleanups == 0 {
			iv.Problems = append(iv.Problems, "the Firestore freeze hit no request")
		}
	}
	parts = append(parts, fmt.Sprintf("%d SIGKILLs with %v cleanup pushes in flight", len(c.KillCleanups), c.KillCleanups))
	if len(c.KillCleanups) < len(cfg.KillAt) {
		iv.Problems = append(iv.Problems, fmt.Sprintf("only %d of %d kills happened", len(c.KillCleanups), len(cfg.KillAt)))
	}
	for i, n := range c.KillCleanups {
		if n == 0 {
			iv.Problems = append(iv.Problems, fmt.Sprintf("kill %d hit no cleanup in flight", i+1))
		}
	}
	parts = append(parts, fmt.Sprintf("under the Compute faults: %d calls, %d answered %s, %d over quota, %d in use/not ready, %d deleted",
		c.Compute.Calls, c.Compute.ByStatus[failCode], failCode, c.Compute.QuotaErrors, c.Compute.ByStatus["400"], c.Compute.Deleted))
	if cfg.FailRate > 0 && c.Compute.ByStatus[failCode] == 0 {
		iv.Problems = append(iv.Problems, "no Compute call failed with "+failCode)
	}
	if cfg.Quota > 0 && c.Compute.QuotaErrors == 0 {
		iv.Problems = append(iv.Problems, "the quota never refused a call")
	}
	if cfg.Workload.InUse > 0 && c.Compute.ByStatus["400"] == 0 {
		iv.Problems = append(iv.Problems, "no delete was refused as in use")
	}
	iv.OK = len(iv.Problems) == 0
	iv.Detail = strings.Join(parts, "; ")
	return iv
}

// checkFaultThroughput judges the cleanup throughput while Compute was
// sick: the service must use at least min of the delete quota the fake
// granted (whole synchronized minutes when the phase spans any). With min
// 0 the figure is only reported.
func checkFaultThroughput(f FaultThroughput, min float64) Invariant {
	iv := Invariant{Name: "fault-throughput", Detail: f.String()}
	switch {
	case f.QuotaPerMinute <= 0:
		iv.Detail = "no quota set: nothing to measure against"
	case f.DeleteCalls == 0:
		iv.Problems = append(iv.Problems, "no delete call during the fault phase")
	case f.Figure() < min:
		iv.Problems = append(iv.Problems, fmt.Sprintf("used %.2f of the granted quota under the faults, want at least %.2f", f.Figure(), min))
	}
	iv.OK = len(iv.Problems) == 0
	return iv
}
