package demo

import (
	"context"
	"errors"
	"fmt"
	"github.com/snapsweep/snapsweep/internal/wait"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/reporter"
)

// The demo's migration jobs: a plan drawn from the seed (which tasks
// succeed, fail or keep running, how many snapshots each takes, which
// events arrive twice or out of order), played against the service through
// the job-side reporter and, for the misbehaving parts, raw publishes.

// Task outcomes of the plan.
const (
	outcomeSucceeded = "succeeded"
	outcomeFailed    = "failed"
	outcomeRunning   = "running"
)

// How a task's events reach Pub/Sub.
const (
	modeReporter  = "reporter"  // in order, through the reporter
	modeDuplicate = "duplicate" // every event published twice
	modeReordered = "reordered" // the outcome before the snapshots
)

// foreignSession is the label value of the snapshot another team took.
const foreignSession = "someone-elses-wave"

type planSnapshot struct {
	Name string
	// WrongLabel: created with another session's label (to be refused).
	WrongLabel bool
	// InUse: the first deletes fail with resourceInUseByAnotherResource.
	InUse int
}

type planTask struct {
	Session, ID string
	Outcome     string
	Mode        string
	Error       string
	Snapshots   []planSnapshot
	// Start is when the task starts after its session; Steps are the
	// pauses between its events (the migration work).
	Start time.Duration
	Steps []time.Duration
}

type planSession struct {
	ID       string
	Complete bool
	Tasks    []*planTask
}

// demoPlan is everything the simulated jobs will do.
type demoPlan struct {
	Project  string
	Sessions []*planSession
	// Orphan is a labelled snapshot no job ever reports.
	Orphan string
	// ForeignProject is the project of an event outside the allowlist.
	ForeignProject string
}

// tasks returns every task of the plan.
func (p *demoPlan) tasks() []*planTask {
	var out []*planTask
	for _, s := range p.Sessions {
		out = append(out, s.Tasks...)
	}
	return out
}

var failureReasons = []string{
	"disk attach timed out after 600s",
	"guest agent did not report ready",
	"target zone out of capacity for n2-standard-8",
	"checksum mismatch on /dev/sdb",
}

// makeDemoPlan draws the plan from seed. With more than one session the
// last one is still running (no session.completed; some of its tasks never
// finish); the others complete, with some failed tasks.
func makeDemoPlan(project string, sessions, tasks int, seed uint64, suffix string) *demoPlan {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed5eed))
	p := &demoPlan{Project: project, ForeignProject: "someone-elses-project"}
	disks := []string{"boot", "data", "logs"}
	for i := range sessions {
		s := &planSession{ID: fmt.Sprintf("wave-%d%s", i+1, suffix), Complete: i < sessions-1 || sessions == 1}
		running := i == sessions-1 && sessions > 1
		for j := range tasks {
			t := &planTask{Session: s.ID, ID: fmt.Sprintf("vm-%02d", j+1), Outcome: outcomeSucceeded, Mode: modeReporter}
			switch x := rng.Float64(); {
			case running && x < 0.30:
				t.Outcome = outcomeRunning
			case x > 0.85:
				t.Outcome = outcomeFailed
			}
			n := 1 + rng.IntN(3)
			for k := range n {
				t.Snapshots = append(t.Snapshots, planSnapshot{Name: fmt.Sprintf("%s-%s-%s", s.ID, t.ID, disks[k])})
			}
			if t.Outcome != outcomeRunning {
				switch x := rng.Float64(); {
				case x < 0.10:
					t.Mode = modeDuplicate
				case x < 0.20:
					t.Mode = modeReordered
				}
			}
			if t.Outcome == outcomeFailed {
				t.Error = failureReasons[rng.IntN(len(failureReasons))]
			}
			t.Start = time.Duration(rng.IntN(2500)) * time.Millisecond
			for range n + 2 {
				t.Steps = append(t.Steps, time.Duration(40+rng.IntN(260))*time.Millisecond)
			}
			s.Tasks = append(s.Tasks, t)
		}
		p.Sessions = append(p.Sessions, s)
	}
	// Make sure every case shows up: a failed task in the first session,
	// a running one in the running session.
	first := p.Sessions[0].Tasks
	if len(first) > 1 && !hasOutcome(first, outcomeFailed) {
		first[len(first)-1].Outcome, first[len(first)-1].Error = outcomeFailed, failureReasons[0]
	}
	if last := p.Sessions[len(p.Sessions)-1]; !last.Complete && !hasOutcome(last.Tasks, outcomeRunning) {
		last.Tasks[0].Outcome, last.Tasks[0].Mode = outcomeRunning, modeReporter
	}
	// One snapshot of a succeeded task carries another session's label:
	// snapsweep must refuse to delete it.
	for _, t := range first {
		if t.Outcome == outcomeSucceeded && t.Mode == modeReporter {
			t.Snapshots[0].WrongLabel = true
			break
		}
	}
	// A few snapshots of succeeded tasks are in use for a while (an image
	// is being created from them): deletes fail twice, then succeed.
	inUse := 0
	for _, t := range p.tasks() {
		if inUse == 3 {
			break
		}
		if t.Outcome == outcomeSucceeded && !t.Snapshots[len(t.Snapshots)-1].WrongLabel && rng.IntN(4) == 0 {
			t.Snapshots[len(t.Snapshots)-1].InUse = 2
			inUse++
		}
	}
	p.Orphan = p.Sessions[0].ID + "-forgotten-snap"
	return p
}

func hasOutcome(tasks []*planTask, outcome string) bool {
	for _, t := range tasks {
		if t.Outcome == outcome {
			return true
		}
	}
	return false
}

// simStats counts what the simulated jobs published.
type simStats struct {
	Events     atomic.Int64 // events published, duplicates included
	Duplicates atomic.Int64 // second copies
	Reordered  atomic.Int64 // tasks whose outcome was published before their snapshots
}

// simulation plays the plan.
type simulation struct {
	plan   *demoPlan
	ps     *pubsub.Client
	topic  string
	label  string
	fake   *gcefake.Fake
	raw    *pubsub.Publisher
	stats  *simStats
	mu     sync.Mutex
	result []*pubsub.PublishResult
}

// run plays every session side by side and returns when every event is
// published.
func (sim *simulation) run(ctx context.Context) error {
	sim.raw = sim.ps.Publisher(sim.topic)
	defer sim.raw.Stop()
	sim.fake.AddSnapshot(sim.plan.Project, sim.plan.Orphan, map[string]string{sim.label: sim.plan.Sessions[0].ID})
	for _, t := range sim.plan.tasks() {
		for _, s := range t.Snapshots {
			if s.InUse > 0 {
				sim.fake.InUse(sim.plan.Project, s.Name, s.InUse)
			}
		}
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(sim.plan.Sessions)+1)
	for _, s := range sim.plan.Sessions {
		wg.Go(func() { errc <- sim.session(ctx, s) })
	}
	wg.Go(func() {
		// Messages that can never be processed: one for a project outside
		// the allowlist, one that is not even JSON.
		if wait.Sleep(ctx, 700*time.Millisecond) != nil {
			return
		}
		foreign := events.Event{ID: uuid.NewString(), Type: events.SnapshotCreated, Time: time.Now().UTC(),
			SessionID: sim.plan.Sessions[0].ID, TaskID: "vm-99",
			Snapshot: &events.SnapshotRef{Project: sim.plan.ForeignProject, Name: "not-ours-1"}}
		m, err := reporter.NewMessage(foreign)
		if err != nil {
			errc <- err
			return
		}
		sim.publishRaw(ctx, m)
		sim.publishRaw(ctx, &pubsub.Message{Data: []byte(`{"id": "demo-malformed", "type": "snapshot.created", "time": "2026-`)})
	})
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	sim.mu.Lock()
	results := sim.result
	sim.mu.Unlock()
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			errs = append(errs, fmt.Errorf("publish: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (sim *simulation) publishRaw(ctx context.Context, m *pubsub.Message) {
	r := sim.raw.Publish(ctx, m)
	sim.stats.Events.Add(1)
	sim.mu.Lock()
	sim.result = append(sim.result, r)
	sim.mu.Unlock()
}

// publishEvent publishes ev (twice when dup).
func (sim *simulation) publishEvent(ctx context.Context, ev events.Event, dup bool) error {
	m, err := reporter.NewMessage(ev)
	if err != nil {
		return err
	}
	sim.publishRaw(ctx, m)
	if dup {
		sim.stats.Duplicates.Add(1)
		m2, _ := reporter.NewMessage(ev)
		sim.publishRaw(ctx, m2)
	}
	return nil
}

func (sim *simulation) session(ctx context.Context, s *planSession) error {
	r, err := reporter.New(sim.ps, sim.topic, s.ID, reporter.WithLabelKey(sim.label))
	if err != nil {
		return err
	}
	count := func(err error) error {
		if err == nil {
			sim.stats.Events.Add(1)
		}
		return err
	}
	if err := count(r.SessionStarted(ctx)); err != nil {
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(s.Tasks))
	for _, t := range s.Tasks {
		wg.Go(func() {
			if err := wait.Sleep(ctx, t.Start); err != nil {
				errc <- err
				return
			}
			errc <- sim.task(ctx, r, t, count)
		})
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if s.Complete {
		errs = append(errs, count(r.SessionCompleted(ctx)))
	}
	errs = append(errs, r.Close(ctx))
	return errors.Join(errs...)
}

// task plays one task: it creates its snapshots in Compute (with the
// reporter's labels) and reports them and its outcome.
func (sim *simulation) task(ctx context.Context, r *reporter.Reporter, t *planTask, count func(error) error) error {
	step := 0
	pause := func() error {
		d := t.Steps[min(step, len(t.Steps)-1)]
		step++
		return wait.Sleep(ctx, d)
	}
	labels := func(s planSnapshot) map[string]string {
		if s.WrongLabel {
			return map[string]string{sim.label: foreignSession}
		}
		return r.Labels()
	}
	ref := func(s planSnapshot) events.SnapshotRef {
		return events.SnapshotRef{Project: sim.plan.Project, Name: s.Name, SourceDisk: "projects/" + sim.plan.Project + "/zones/europe-west1-b/disks/" + s.Name}
	}
	if t.Mode == modeReporter {
		if err := count(r.TaskStarted(ctx, t.ID)); err != nil {
			return err
		}
		for _, s := range t.Snapshots {
			if err := pause(); err != nil {
				return err
			}
			sim.fake.AddSnapshot(sim.plan.Project, s.Name, labels(s))
			if err := count(r.SnapshotCreated(ctx, t.ID, ref(s))); err != nil {
				return err
			}
		}
		if err := pause(); err != nil {
			return err
		}
		switch t.Outcome {
		case outcomeSucceeded:
			return count(r.TaskCompleted(ctx, t.ID))
		case outcomeFailed:
			return count(r.TaskFailed(ctx, t.ID, t.Error))
		}
		return nil
	}

	// The misbehaving jobs publish events themselves: every event twice,
	// or the outcome before the snapshots (each event keeps the time it
	// happened at; only the delivery order is wrong).
	ev := func(typ events.Type) events.Event {
		return events.Event{ID: uuid.NewString(), Type: typ, Time: time.Now().UTC(), SessionID: t.Session, TaskID: t.ID}
	}
	dup := t.Mode == modeDuplicate
	if err := sim.publishEvent(ctx, ev(events.TaskStarted), dup); err != nil {
		return err
	}
	var created []events.Event
	for _, s := range t.Snapshots {
		if err := pause(); err != nil {
			return err
		}
		sim.fake.AddSnapshot(sim.plan.Project, s.Name, labels(s))
		e := ev(events.SnapshotCreated)
		sn := ref(s)
		e.Snapshot = &sn
		created = append(created, e)
		if !dup {
			continue
		}
		if err := sim.publishEvent(ctx, e, true); err != nil {
			return err
		}
	}
	if err := pause(); err != nil {
		return err
	}
	outcome := ev(events.TaskCompleted)
	if t.Outcome == outcomeFailed {
		outcome = ev(events.TaskFailed)
		outcome.Error = t.Error
	}
	if err := sim.publishEvent(ctx, outcome, dup); err != nil {
		return err
	}
	if dup {
		return nil
	}
	sim.stats.Reordered.Add(1)
	if err := pause(); err != nil {
		return err
	}
	for _, e := range created {
		if err := sim.publishEvent(ctx, e, false); err != nil {
			return err
		}
	}
	return nil
}
