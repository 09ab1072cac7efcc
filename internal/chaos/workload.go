package chaos

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

// Outcome is how a generated task ends.
type Outcome string

// Task outcomes, as cmd/snapsweep/property_test.go's generator draws them.
const (
	Succeeded     Outcome = "succeeded"        // task.completed
	Failed        Outcome = "failed"           // task.failed
	FailedRetried Outcome = "failed-succeeded" // task.failed, then task.completed on retry
	StillRunning  Outcome = "running"          // no outcome yet
)

// Wrong ownership labels.
const (
	labelOtherSess = "other-session" // the label names another session
	labelMissing   = "missing"       // no ownership label at all
	wrongSession   = "someone-else"  // the session the label names then
)

// TaskState is the registry state the task must end in.
func (o Outcome) TaskState() store.TaskState {
	switch o {
	case Succeeded, FailedRetried:
		return store.TaskSucceeded
	case Failed:
		return store.TaskFailed
	}
	return store.TaskRunning
}

// Snap is one generated snapshot and what the rules say about it.
type Snap struct {
	Name, Session, Task string
	Outcome             Outcome
	// JobDeleted: the job deleted it itself (snapshot.deleted); it never
	// exists in Compute.
	JobDeleted bool
	// WrongLabel is "" when the snapshot carries the right ownership label,
	// else labelMissing or labelOtherSess.
	WrongLabel string
	// InUse is how many deletes of it fail with resourceInUseByAnotherResource.
	InUse int
	// SlowOp: its delete operations report RUNNING for longer than the
	// engine waits, so the delete is left pending for a redelivery or the
	// sweep to confirm.
	SlowOp bool
}

// Eligible reports whether the rules say snapsweep must delete it.
func (s *Snap) Eligible() bool {
	return s.Outcome == Succeeded && s.WrongLabel == "" && !s.JobDeleted
}

// Undecided reports whether the rules leave its fate to the order of
// delivery: a snapshot of a task that failed and then succeeded on a retry
// was taken before the failure, so it keeps the failed retention (a retry
// never shortens it) — if snapsweep learns of the failure before it acts on
// the success. Delivered the other way round, the success is all snapsweep
// knows of, and it deletes the snapshot: both ends are within the rules.
func (s *Snap) Undecided() bool {
	return s.Outcome == FailedRetried && s.WrongLabel == "" && !s.JobDeleted
}

// Labels are its labels in Compute.
func (s *Snap) Labels(labelKey string) map[string]string {
	l := map[string]string{"created-by": "snapsweep-chaos"}
	switch s.WrongLabel {
	case "":
		l[labelKey] = s.Session
	case labelOtherSess:
		l[labelKey] = wrongSession
	}
	return l
}

// WantState is the registry state it must end in.
func (s *Snap) WantState() store.State {
	switch {
	case s.JobDeleted:
		return store.Deleted
	case s.Outcome == Succeeded && s.WrongLabel != "":
		return store.Refused
	case s.Outcome == Succeeded:
		return store.Deleted
	case s.Outcome == Failed, s.Outcome == FailedRetried:
		return store.Retained // or deleted, for an undecided one
	}
	return store.Active
}

// Task is one generated task.
type Task struct {
	Session, ID string
	Outcome     Outcome
}

// Event is one generated migration event, encoded.
type Event struct {
	ID   string
	Type events.Type
	Data []byte
}

// Workload is the generated stream and what it must lead to.
type Workload struct {
	Project  string
	Sessions []string
	Tasks    []*Task
	Snaps    []*Snap
	Events   []Event
	// Deliveries are indexes into Events: every event 1–3 times, shuffled.
	Deliveries []int
}

// WorkloadConfig sizes the workload.
type WorkloadConfig struct {
	Project  string
	Sessions int
	// TasksMin and TasksMax bound the tasks per session; each task takes
	// 1 to SnapsMax snapshots.
	TasksMin, TasksMax, SnapsMax int
	// WrongLabels is how many snapshots carry a wrong or no ownership label
	// (most of them in succeeded tasks); InUse how many eligible ones are
	// in use for a few delete calls.
	WrongLabels, InUse int
	// SlowOps is how many eligible ones have slow delete operations.
	SlowOps int
	Seed    uint64
}

// Generate builds a workload: sessions of tasks that run, take snapshots and
// then succeed, fail, fail and succeed on retry, or keep running; some
// snapshots are deleted by the job itself. Every event is delivered 1–3
// times, in shuffled order.
func Generate(cfg WorkloadConfig) *Workload {
	r := rand.New(rand.NewPCG(cfg.Seed, 0xc4a05))
	w := &Workload{Project: cfg.Project}
	// Events are a second apart, the last an hour ago: at any scale the
	// stream lies in the past, never beyond snapsweep's clock-skew bound
	// (a stream stamped into the future is rejected as future_time).
	var evs []events.Event
	next := func(session, task string, typ events.Type, snap, errText string) {
		ev := events.Event{ID: fmt.Sprintf("ev-%d", len(evs)+1), Type: typ, SessionID: session, TaskID: task, Error: errText}
		if snap != "" {
			ev.Snapshot = &events.SnapshotRef{Project: cfg.Project, Name: snap,
				SourceDisk: fmt.Sprintf("projects/%s/zones/us-central1-a/disks/%s", cfg.Project, snap)}
		}
		evs = append(evs, ev)
	}
	stamp := func() {
		at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second).Add(-time.Duration(len(evs)) * time.Second)
		for _, ev := range evs {
			at = at.Add(time.Second)
			ev.Time = at
			if err := ev.Validate(); err != nil {
				panic(fmt.Sprintf("chaos: generated an invalid event: %v", err))
			}
			data, err := json.Marshal(ev)
			if err != nil {
				panic(err)
			}
			w.Events = append(w.Events, Event{ID: ev.ID, Type: ev.Type, Data: data})
		}
	}
	for s := range cfg.Sessions {
		session := fmt.Sprintf("chaos-sess-%d", s)
		w.Sessions = append(w.Sessions, session)
		next(session, "", events.SessionStarted, "", "")
		for t := range cfg.TasksMin + r.IntN(cfg.TasksMax-cfg.TasksMin+1) {
			task := &Task{Session: session, ID: fmt.Sprintf("vm-%d-%d", s, t)}
			w.Tasks = append(w.Tasks, task)
			next(session, task.ID, events.TaskStarted, "", "")
			var snaps []*Snap
			for k := range 1 + r.IntN(cfg.SnapsMax) {
				sn := &Snap{Name: fmt.Sprintf("snap-%d-%d-%d", s, t, k), Session: session, Task: task.ID}
				snaps = append(snaps, sn)
				w.Snaps = append(w.Snaps, sn)
				next(session, task.ID, events.SnapshotCreated, sn.Name, "")
			}
			if r.IntN(5) == 0 {
				snaps[0].JobDeleted = true
				next(session, task.ID, events.SnapshotDeleted, snaps[0].Name, "")
			}
			switch r.IntN(4) {
			case 0:
				task.Outcome = Succeeded
				next(session, task.ID, events.TaskCompleted, "", "")
			case 1:
				task.Outcome = Failed
				next(session, task.ID, events.TaskFailed, "", "disk copy failed")
			case 2:
				task.Outcome = FailedRetried
				next(session, task.ID, events.TaskFailed, "", "disk copy failed")
				next(session, task.ID, events.TaskCompleted, "", "")
			case 3:
				task.Outcome = StillRunning
			}
			for _, sn := range snaps {
				sn.Outcome = task.Outcome
			}
		}
		next(session, "", events.SessionCompleted, "", "")
	}

	// Wrong labels: most in succeeded tasks (rule 2 must refuse them), one
	// in a failed and one in a running task.
	pick := func(n int, ok func(*Snap) bool) []*Snap {
		var cands []*Snap
		for _, sn := range w.Snaps {
			if !sn.JobDeleted && sn.WrongLabel == "" && sn.InUse == 0 && !sn.SlowOp && ok(sn) {
				cands = append(cands, sn)
			}
		}
		r.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
		return cands[:min(n, len(cands))]
	}
	if cfg.WrongLabels > 0 {
		succ := func(sn *Snap) bool { return sn.Outcome == Succeeded }
		wrong := pick(max(cfg.WrongLabels-2, 1), succ)
		wrong = append(wrong, pick(1, func(sn *Snap) bool { return sn.Outcome == Failed })...)
		wrong = append(wrong, pick(1, func(sn *Snap) bool { return sn.Outcome == StillRunning })...)
		for i, sn := range wrong {
			sn.WrongLabel = labelOtherSess
			if i%2 == 1 {
				sn.WrongLabel = labelMissing
			}
		}
	}
	for _, sn := range pick(cfg.InUse, (*Snap).Eligible) {
		sn.InUse = 2 + r.IntN(3)
	}
	for _, sn := range pick(cfg.SlowOps, (*Snap).Eligible) {
		sn.SlowOp = true
	}

	stamp()
	for i := range w.Events {
		for range 1 + r.IntN(3) {
			w.Deliveries = append(w.Deliveries, i)
		}
	}
	r.Shuffle(len(w.Deliveries), func(i, j int) { w.Deliveries[i], w.Deliveries[j] = w.Deliveries[j], w.Deliveries[i] })
	return w
}

// Counts sums the workload up for the log.
func (w *Workload) Counts() map[string]int {
	c := map[string]int{"sessions": len(w.Sessions), "tasks": len(w.Tasks), "snapshots": len(w.Snaps),
		"events": len(w.Events), "deliveries": len(w.Deliveries)}
	for _, t := range w.Tasks {
		c["tasks "+string(t.Outcome)]++
	}
	for _, sn := range w.Snaps {
		switch {
		case sn.JobDeleted:
			c["job-deleted"]++
		case sn.WrongLabel != "":
			c["wrong-label"]++
		case sn.Eligible():
			c["eligible"]++
		}
		if sn.InUse > 0 {
			c["in-use"]++
		}
		if sn.SlowOp {
			c["slow-op"]++
		}
	}
	return c
}

// snapNames returns the names of the snapshots that match ok, sorted.
func (w *Workload) snapNames(ok func(*Snap) bool) []string {
	var out []string
	for _, sn := range w.Snaps {
		if ok(sn) {
			out = append(out, sn.Name)
		}
	}
	slices.Sort(out)
	return out
}
