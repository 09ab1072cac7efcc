package ingest_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/firestore"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/gce/gcefake"
	"github.com/snapsweep/snapsweep/ingest"
	"github.com/snapsweep/snapsweep/internal/emulators"
	"github.com/snapsweep/snapsweep/internal/fscount"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

const label = "migration-session"

// outbox stands in for the cleanup topic: the messages are handed to the
// engine as push would.
type outbox struct {
	mu  sync.Mutex
	msg []events.CleanupMessage
}

func (o *outbox) Publish(_ context.Context, m events.CleanupMessage) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.msg = append(o.msg, m)
	return nil
}

func (o *outbox) take() []events.CleanupMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.msg
	o.msg = nil
	return m
}

// ops is what one step cost in Firestore: documents read (what Firestore
// bills), read RPCs (gets, batch gets, queries, aggregations), documents
// written and transactions.
type ops struct {
	Docs, ReadRPCs, Writes, Txns int
}

func (a ops) add(b ops) ops {
	return ops{a.Docs + b.Docs, a.ReadRPCs + b.ReadRPCs, a.Writes + b.Writes, a.Txns + b.Txns}
}

func measure(c *fscount.Counter, step func()) ops {
	c.Reset()
	step()
	reads, writes, m := c.Snapshot()
	return ops{Docs: reads, ReadRPCs: m["GetDocument"] + m["BatchGetDocuments"] + m["RunQuery"] + m["RunAggregationQuery"],
		Writes: writes, Txns: m["BeginTransaction"]}
}

// TestFirestoreOpsPerSnapshotLife counts the Firestore operations of each
// step of a snapshot's life, from its report to its confirmed deletion,
// against the emulator: snapshot.created, task.completed (the task's one
// snapshot), and the cleanup message through the engine (claim, last check
// before the DELETE, confirm). The counts are deterministic: a change that
// costs an operation more fails here (and one that saves one updates the
// table and BENCHMARKS.md). Goals of issue 14: snapshot.created at most 2
// reads and 2 writes; the whole life at most 8 reads (read round trips)
// and 5 writes. The write goal is met only for tasks of several snapshots
// (7 here, for a task of one; 5 + 2/N for N): the record is written when
// registered, cleanup_pending, claimed and armed (one write), and deleted;
// the processed-event markers and the task add the rest.
func TestFirestoreOpsPerSnapshotLife(t *testing.T) {
	t.Parallel()
	emulators.Require(t, emulators.Firestore)
	ctx := context.Background()
	counter := fscount.New()
	opts, err := counter.Options()
	if err != nil {
		t.Fatal(err)
	}
	const project = "proj-a"
	client, err := firestore.NewClient(ctx, emulators.ProjectID(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	reg := store.NewFirestore(client)
	fake := gcefake.New(gcefake.Options{})
	compute, err := gce.New(ctx, gce.Config{Endpoint: "http://compute.test"}, option.WithHTTPClient(fake.Client()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { compute.Close() })
	policy := lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{project})}
	box := &outbox{}
	judge := &cleanup.Judge{Store: reg, Tolerance: 0.05}
	proc := &ingest.Processor{Store: reg, Policy: policy, Judge: judge,
		Scheduler: &cleanup.Scheduler{Store: reg, Publisher: box, Policy: policy}}
	engine := cleanup.NewEngine(cleanup.EngineConfig{Store: reg, Compute: compute, Policy: policy, SessionLabel: label,
		Rate: 1000, OpWait: 5 * time.Second, Owner: "test", Judge: judge})

	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	n := 0
	apply := func(typ events.Type, task string, snap *events.SnapshotRef) {
		t.Helper()
		n++
		ev := events.Event{ID: "ev-" + strconv.Itoa(n), Type: typ, Time: at.Add(time.Duration(n) * time.Second), SessionID: "s1", TaskID: task, Snapshot: snap}
		if _, err := proc.Apply(ctx, ev); err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
	}
	// The session and the task are known before the snapshot is reported
	// (not part of the life).
	apply(events.SessionStarted, "", nil)
	apply(events.TaskStarted, "vm-1", nil)
	fake.AddSnapshot(project, "snap-1", map[string]string{label: "s1"})

	got := map[string]ops{}
	got["snapshot.created"] = measure(counter, func() {
		apply(events.SnapshotCreated, "vm-1", &events.SnapshotRef{Project: project, Name: "snap-1"})
	})
	got["task.completed"] = measure(counter, func() { apply(events.TaskCompleted, "vm-1", nil) })
	msgs := box.take()
	if len(msgs) != 1 {
		t.Fatalf("task.completed published %d cleanup messages, want 1", len(msgs))
	}
	got["cleanup message"] = measure(counter, func() {
		out, err := engine.Handle(ctx, msgs[0])
		if err != nil || out.Result != cleanup.ResultDeleted {
			t.Fatalf("cleanup: %+v, %v; want deleted", out, err)
		}
	})
	life := got["snapshot.created"].add(got["task.completed"]).add(got["cleanup message"])
	got["life"] = life

	want := map[string]ops{
		"snapshot.created": {Docs: 2, ReadRPCs: 1, Writes: 2, Txns: 1},
		"task.completed":   {Docs: 5, ReadRPCs: 3, Writes: 3, Txns: 2},
		"cleanup message":  {Docs: 6, ReadRPCs: 4, Writes: 2, Txns: 3},
		"life":             {Docs: 13, ReadRPCs: 8, Writes: 7, Txns: 6},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Firestore operations per step (-want +got):\n%s", diff)
	}
	if c := got["snapshot.created"]; c.ReadRPCs > 2 || c.Writes > 2 {
		t.Errorf("snapshot.created costs %d reads and %d writes, over the goal of 2 and 2", c.ReadRPCs, c.Writes)
	}
	if life.ReadRPCs > 8 {
		t.Errorf("a snapshot's life costs %d reads, over the goal of 8", life.ReadRPCs)
	}
	for step, o := range got {
		t.Logf("%-17s %s", step, fmt.Sprintf("%d docs read in %d read RPCs, %d writes, %d transactions", o.Docs, o.ReadRPCs, o.Writes, o.Txns))
	}
}

// flaky refuses the first publish, as a Pub/Sub outage would.
type flaky struct {
	outbox
	failed bool
}

func (f *flaky) Publish(ctx context.Context, m events.CleanupMessage) error {
	f.mu.Lock()
	if !f.failed {
		f.failed = true
		f.mu.Unlock()
		return fmt.Errorf("publish: %w", store.ErrUnavailable)
	}
	f.mu.Unlock()
	return f.outbox.Publish(ctx, m)
}

// TestLateReportRedeliveredAfterFailedPublish: a snapshot reported after
// its task succeeded is scheduled at once; when that publish fails, the
// event is already marked processed (the marker is written with the
// record), so its redelivery, refused as applied, must still schedule the
// cleanup from the state instead of acknowledging without work.
func TestLateReportRedeliveredAfterFailedPublish(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reg := store.NewMemory()
	policy := lifecycle.Policy{TTL: 72 * time.Hour, FailedRetention: 168 * time.Hour, Projects: events.NewAllowlist([]string{"proj-a"})}
	pub := &flaky{}
	proc := &ingest.Processor{Store: reg, Policy: policy, Scheduler: &cleanup.Scheduler{Store: reg, Publisher: pub, Policy: policy}}
	at := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	if _, err := proc.Apply(ctx, events.Event{ID: "done", Type: events.TaskCompleted, Time: at, SessionID: "s1", TaskID: "vm-1"}); err != nil {
		t.Fatal(err)
	}
	late := events.Event{ID: "late", Type: events.SnapshotCreated, Time: at.Add(-time.Second), SessionID: "s1", TaskID: "vm-1",
		Snapshot: &events.SnapshotRef{Project: "proj-a", Name: "snap-1"}}
	if _, err := proc.Apply(ctx, late); err == nil {
		t.Fatal("first delivery: the publish failed, want an error (redelivery)")
	}
	out, err := proc.Apply(ctx, late)
	if err != nil {
		t.Fatalf("redelivery: %v", err)
	}
	if diff := cmp.Diff(ingest.Outcome{Duplicate: true, Scheduled: 1}, ingest.Outcome{Duplicate: out.Duplicate, Scheduled: out.Scheduled}); diff != "" {
		t.Errorf("redelivery (-want +got):\n%s", diff)
	}
	if got := pub.take(); len(got) != 1 || got[0].Name != "snap-1" {
		t.Errorf("cleanup messages after the redelivery: %+v, want one for snap-1", got)
	}
}
