package reporter_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"cloud.google.com/go/pubsub/v2"
	"google.golang.org/api/idtoken"
	"google.golang.org/protobuf/proto"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/reporter"
)

// migrate stands for the job's own work on one VM: it creates its
// snapshots with the given labels and returns them, each with the id
// Compute gave it (the insert operation's targetId).
func migrate(ctx context.Context, vm string, labels map[string]string) (snapshots []events.SnapshotRef, err error) {
	return []events.SnapshotRef{{Project: "disk-project", Name: vm + "-boot", ID: "4862391045337619302"}}, nil
}

// A migration job reports its session to snapsweep: the snapshots of
// succeeded tasks are deleted, those of failed tasks kept.
func Example() {
	ctx := context.Background()
	client, err := pubsub.NewClient(ctx, "host-project") // honours PUBSUB_EMULATOR_HOST
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	r, err := reporter.New(client, reporter.DefaultTopic, "wave-7")
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close(ctx)

	if err := r.SessionStarted(ctx); err != nil {
		log.Fatal(err)
	}
	for _, vm := range []string{"vm-1", "vm-2"} {
		if err := r.TaskStarted(ctx, vm); err != nil {
			log.Fatal(err)
		}
		snaps, err := migrate(ctx, vm, r.Labels()) // create every snapshot with r.Labels()
		for _, snap := range snaps {
			if err := r.SnapshotCreated(ctx, vm, snap); err != nil {
				log.Fatal(err)
			}
		}
		if err != nil {
			err = r.TaskFailed(ctx, vm, err.Error())
		} else {
			err = r.TaskCompleted(ctx, vm)
		}
		if err != nil {
			log.Fatal(err)
		}
	}
	if err := r.SessionCompleted(ctx); err != nil {
		log.Fatal(err)
	}
	// Every event must reach snapsweep: a lost snapshot.created is a leaked
	// snapshot until the orphan sweep finds it.
	if err := r.Close(ctx); err != nil {
		log.Fatal(err)
	}
}

// A job that wants to know how the cleanup went polls the service's status
// until the session's outcome is final. On Cloud Run the caller needs the
// invoker role and an ID token for the service URL.
func ExampleReporter_CleanupStatus() {
	ctx := context.Background()
	const service = "https://snapsweep-abc123-ew.a.run.app"
	httpClient, err := idtoken.NewClient(ctx, service)
	if err != nil {
		log.Fatal(err)
	}
	var r *reporter.Reporter // the session's reporter
	for {
		st, err := r.CleanupStatus(ctx, service, httpClient)
		switch {
		case errors.Is(err, reporter.ErrSessionNotFound):
			// The events are still on their way.
		case err != nil:
			log.Fatal(err)
		case st.Session.Outcome.Final():
			fmt.Printf("%s: %s (%d deleted, %d retained)\n", st.Session.SessionID, st.Session.Outcome, st.Counts["deleted"], st.Counts["retained"])
			return
		}
		time.Sleep(10 * time.Second)
	}
}

// A snapshot with its own retention overrides the service's default TTL.
// ID is the snapshot's Compute id, from the insert operation's targetId.
func ExampleReporter_SnapshotCreated() {
	ctx := context.Background()
	var r *reporter.Reporter // the session's reporter
	err := r.SnapshotCreated(ctx, "vm-1", events.SnapshotRef{
		Project:    "disk-project",
		Name:       "vm-1-data",
		SourceDisk: "projects/disk-project/zones/europe-west1-b/disks/vm-1-data",
		Retention:  "24h",
		ID:         "4862391045337619302",
	})
	if err != nil {
		log.Fatal(err) // a *events.RejectError: nothing was published
	}
}

// A job that creates its snapshots with the Compute client reports each
// with the id Compute gave it (the insert operation's targetId): a name can
// be reused once a snapshot is deleted, and with the id snapsweep never
// deletes a different snapshot of the same name.
func ExampleReporter_RegisterSnapshotWithID() {
	ctx := context.Background()
	var r *reporter.Reporter // the session's reporter
	snapshots, err := compute.NewSnapshotsRESTClient(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer snapshots.Close()
	op, err := snapshots.Insert(ctx, &computepb.InsertSnapshotRequest{
		Project: "disk-project",
		SnapshotResource: &computepb.Snapshot{
			Name:       proto.String("vm-1-boot"),
			SourceDisk: proto.String("projects/disk-project/zones/europe-west1-b/disks/vm-1-boot"),
			Labels:     r.Labels(),
		},
	})
	if err == nil {
		err = op.Wait(ctx)
	}
	if err != nil {
		log.Fatal(err)
	}
	if e := op.Proto().GetError(); e != nil {
		log.Fatalf("create snapshot: %v", e.GetErrors())
	}
	if err := r.RegisterSnapshotWithID(ctx, "vm-1", "disk-project", "vm-1-boot", op.Proto().GetTargetId()); err != nil {
		log.Fatal(err)
	}
}
