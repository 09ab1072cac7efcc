// Package store is snapsweep's registry: which snapshots exist, for which
// session and task, and in what state. Firestore holds it in production
// (Firestore); Memory is the embedded store of the local demo. Both pass the
// same contract suite (store/storetest).
//
// The store knows records and transactions, not policy: callers pass a
// function that computes the next record from the current one, and the store
// runs it inside a transaction (which may run it more than once, so it must
// be pure). It must not encode policy: no rule of the contract lives here.
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"time"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrUnavailable wraps errors of the backing database that a retry may fix
// (unavailable, deadline exceeded, aborted). Handlers answer 5xx on it.
var ErrUnavailable = errors.New("registry unavailable")

// State is the lifecycle state of a registered snapshot. docs/state-machine.md
// lists the allowed transitions.
type State string

// Snapshot states.
const (
	// Active: registered, its task has not finished (or it is an orphan).
	Active State = "active"
	// Retained: its task failed; kept as the rollback path until ExpiresAt.
	Retained State = "retained"
	// CleanupPending: a cleanup message was (or is being) published.
	CleanupPending State = "cleanup_pending"
	// Deleting: a cleanup handler holds the lease and is deleting it.
	Deleting State = "deleting"
	// Deleted: gone (deleted by snapsweep, by the job, or found missing).
	Deleted State = "deleted"
	// Failed: the delete failed permanently; an operator must look.
	Failed State = "failed"
	// Refused: the ownership check failed; never deleted by snapsweep.
	Refused State = "refused"
	// Held: an operator put it on hold; nothing deletes it until released.
	Held State = "held"
	// Vanished: gone from Compute without snapsweep deleting it (or the
	// name now belongs to another snapshot); terminal.
	Vanished State = "vanished"
)

// States lists every snapshot state in lifecycle order.
func States() []State {
	return []State{Active, Retained, CleanupPending, Deleting, Deleted, Failed, Refused, Held, Vanished}
}

// LiveStates are the states of a snapshot that still exists (or may).
func LiveStates() []State {
	return []State{Active, Retained, CleanupPending, Deleting, Failed, Refused, Held}
}

// Live reports whether a snapshot in state s may still exist.
func (s State) Live() bool { return s != Deleted && s != Vanished && s != "" }

// Key identifies a snapshot: a name is unique only within its project.
type Key struct {
	Project string
	Name    string
}

// String renders the key as project/name for logs and errors.
func (k Key) String() string { return k.Project + "/" + k.Name }

// ID is the Firestore document id of the snapshot's current record. The full project and name
// make it collision-free ("~" is legal in neither); the short hash in front
// spreads ids of snapshots named in sequence across the key space so that a
// burst of registrations does not hot-spot one tablet.
func (k Key) ID() string { return shortHash(k.Project+"/"+k.Name) + "~" + k.Project + "~" + k.Name }

// TaskKey identifies a task within its session.
type TaskKey struct {
	SessionID string
	TaskID    string
}

// ID is the Firestore document id of the task. Task ids may contain any
// printable character, "/" included, so the id is a hash of both parts
// (the readable values are fields of the document).
func (k TaskKey) ID() string {
	sum := sha256.Sum256([]byte(k.SessionID + "\x00" + k.TaskID))
	return k.SessionID + "~" + hex.EncodeToString(sum[:16])
}

func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:4])
}

// Snapshot is the registry record of one Compute Engine snapshot.
type Snapshot struct {
	Project    string `firestore:"project" json:"project,omitempty"`
	Name       string `firestore:"name" json:"name,omitempty"`
	SessionID  string `firestore:"sessionId" json:"sessionId,omitempty"`
	TaskID     string `firestore:"taskId" json:"taskId,omitempty"`
	SourceDisk string `firestore:"sourceDisk,omitempty" json:"sourceDisk,omitempty"`
	State      State  `firestore:"state" json:"state,omitempty"`
	// PrevState is the state before the last claim or hold, so that a
	// rollback or a release can put the record back.
	PrevState State `firestore:"prevState,omitempty" json:"prevState,omitempty"`
	// Retention overrides the default TTL for this snapshot (Go duration).
	Retention string `firestore:"retention,omitempty" json:"retention,omitempty"`
	// Orphan marks a snapshot adopted by the sweep, not reported by a job.
	Orphan bool `firestore:"orphan,omitempty" json:"orphan,omitempty"`

	CreatedAt    time.Time `firestore:"createdAt" json:"createdAt,omitzero"`       // event time of snapshot.created
	RegisteredAt time.Time `firestore:"registeredAt" json:"registeredAt,omitzero"` // when snapsweep first saw it
	// ExpiresAt is when the sweep may clean it without a task outcome:
	// created + TTL while active, failed + retention while retained.
	ExpiresAt time.Time `firestore:"expiresAt" json:"expiresAt,omitzero"`
	UpdatedAt time.Time `firestore:"updatedAt" json:"updatedAt,omitzero"`

	CleanupReason      string    `firestore:"cleanupReason,omitempty" json:"cleanupReason,omitempty"`
	CleanupRequestedAt time.Time `firestore:"cleanupRequestedAt,omitempty" json:"cleanupRequestedAt,omitzero"`
	// Attempt is the delete generation: it grows with every claim, and the
	// Compute request id derives from it, so a retried call within one claim
	// is deduplicated by Compute and a new claim is a new request.
	Attempt    int       `firestore:"attempt,omitempty" json:"attempt,omitempty"`
	LeaseUntil time.Time `firestore:"leaseUntil,omitempty" json:"leaseUntil,omitzero"`
	LeaseOwner string    `firestore:"leaseOwner,omitempty" json:"leaseOwner,omitempty"`
	Operation  string    `firestore:"operation,omitempty" json:"operation,omitempty"`
	DeletedAt  time.Time `firestore:"deletedAt,omitempty" json:"deletedAt,omitzero"`
	DeletedBy  string    `firestore:"deletedBy,omitempty" json:"deletedBy,omitempty"` // snapsweep, job, vanished

	Error      string `firestore:"error,omitempty" json:"error,omitempty"`
	ErrorClass string `firestore:"errorClass,omitempty" json:"errorClass,omitempty"`
	Retries    int    `firestore:"retries,omitempty" json:"retries,omitempty"`
	HeldBy     string `firestore:"heldBy,omitempty" json:"heldBy,omitempty"`
	HoldReason string `firestore:"holdReason,omitempty" json:"holdReason,omitempty"`

	// ComputeID is Compute's numeric id of the snapshot (from the event, or
	// from snapsweep's first read): only the snapshot with this id may ever
	// be deleted under this record. ComputeCreatedAt is its
	// creationTimestamp.
	ComputeID        string    `firestore:"computeId,omitempty" json:"computeId,omitempty"`
	ComputeCreatedAt time.Time `firestore:"computeCreatedAt,omitempty" json:"computeCreatedAt,omitzero"`
	// Generation counts the snapshots that held this name (1 for the
	// first); Archived marks the record of an earlier one, kept readable.
	Generation int  `firestore:"generation,omitempty" json:"generation,omitempty"`
	Archived   bool `firestore:"archived,omitempty" json:"archived,omitempty"`
	// AdoptedAt is when the sweep adopted the (orphan) snapshot.
	AdoptedAt time.Time `firestore:"adoptedAt,omitempty" json:"adoptedAt,omitzero"`
	// RetainUntil is the longest failed-task retention the record was ever
	// given; it never shrinks.
	RetainUntil time.Time `firestore:"retainUntil,omitempty" json:"retainUntil,omitzero"`
	// DeleteSentAt is set right before a DELETE goes out (and cleared when
	// Compute refused it without executing it): from then on the record
	// stays deleting until the deletion is confirmed.
	DeleteSentAt time.Time `firestore:"deleteSentAt,omitempty" json:"deleteSentAt,omitzero"`
	// Redrives counts the sweep's re-drives of a stuck cleanup.
	Redrives int `firestore:"redrives,omitempty" json:"redrives,omitempty"`
	// LastTransition names the lifecycle transition that wrote the record.
	LastTransition string `firestore:"lastTransition,omitempty" json:"lastTransition,omitempty"`

	// Contender is a report of the same name by another task that could
	// not be told apart from this record's (no Compute ids, not newer):
	// while it is set the record is never deleted by snapsweep, and when
	// the record closes the contender becomes the name's next generation,
	// so that no accepted report is ever lost.
	Contender *Contender `firestore:"contender,omitempty" json:"contender,omitempty"`

	// Size is what Compute said about the snapshot's storage when snapsweep
	// last read it: at adoption, at the sweep's pass over live records,
	// and right before the delete (the last one of a deleted record is its
	// size at deletion). Written only by lifecycle (Arm, Adopt, Measure).
	Size *Size `firestore:"size,omitempty" json:"size,omitempty"`
	// PrevSize is the size Size replaced (Measure): a chain's total
	// before a deletion is read from it.
	PrevSize *Size `firestore:"prevSize,omitempty" json:"prevSize,omitempty"`

	// Replaced, when set on a record being written, is the previous
	// generation of the name: the store archives it in the same
	// transaction. It is never stored itself.
	Replaced *Snapshot `firestore:"-" json:"-"`
}

// Size is a snapshot's storage as Compute reported it at ReadAt.
type Size struct {
	// StorageBytes is what Compute bills the snapshot for (its share of
	// an incremental chain); final only when Status is UP_TO_DATE.
	StorageBytes int64 `firestore:"storageBytes" json:"storageBytes"`
	// Status is Compute's storageBytesStatus: UP_TO_DATE or UPDATING.
	Status string `firestore:"status,omitempty" json:"status,omitempty"`
	// DiskSizeGb is the source disk's size in GiB: a snapshot never
	// stores more than its disk holds, so it bounds a size not yet final.
	DiskSizeGb int64    `firestore:"diskSizeGb,omitempty" json:"diskSizeGb,omitempty"`
	Locations  []string `firestore:"locations,omitempty" json:"locations,omitempty"`
	// Type is STANDARD or ARCHIVE.
	Type string `firestore:"type,omitempty" json:"type,omitempty"`
	// Chain is the snapshot chain's name, if it was created in one.
	Chain  string    `firestore:"chain,omitempty" json:"chain,omitempty"`
	ReadAt time.Time `firestore:"readAt" json:"readAt,omitzero"`
}

// Updating is Compute's storageBytesStatus while a size is not final.
const Updating = "UPDATING"

// Final reports whether the size is Compute's final figure.
func (z *Size) Final() bool { return z != nil && z.Status != Updating }

// SameAs reports whether two reads found the same storage (ReadAt aside).
func (z *Size) SameAs(o *Size) bool {
	if z == nil || o == nil {
		return z == o
	}
	a, b := *z, *o
	a.ReadAt, b.ReadAt = time.Time{}, time.Time{}
	return a.StorageBytes == b.StorageBytes && a.Status == b.Status && a.DiskSizeGb == b.DiskSizeGb &&
		a.Type == b.Type && a.Chain == b.Chain && slices.Equal(a.Locations, b.Locations)
}

// Contender is a competing snapshot.created report of a record's name.
type Contender struct {
	SessionID  string    `firestore:"sessionId" json:"sessionId"`
	TaskID     string    `firestore:"taskId" json:"taskId"`
	CreatedAt  time.Time `firestore:"createdAt" json:"createdAt"`
	ReceivedAt time.Time `firestore:"receivedAt" json:"receivedAt"`
	SourceDisk string    `firestore:"sourceDisk,omitempty" json:"sourceDisk,omitempty"`
	Retention  string    `firestore:"retention,omitempty" json:"retention,omitempty"`
	ComputeID  string    `firestore:"computeId,omitempty" json:"computeId,omitempty"`
}

// Key returns the snapshot's key.
func (s *Snapshot) Key() Key { return Key{Project: s.Project, Name: s.Name} }

// DocID is the document id of this record: the key's for the current
// generation, with the generation appended for an archived one.
func (s *Snapshot) DocID() string {
	if s.Archived {
		return s.Key().ID() + "~g" + strconv.Itoa(max(s.Generation, 1))
	}
	return s.Key().ID()
}

// TaskKey returns the key of the snapshot's task.
func (s *Snapshot) TaskKey() TaskKey { return TaskKey{SessionID: s.SessionID, TaskID: s.TaskID} }

// TaskState is the outcome of a migration task as far as events tell.
type TaskState string

// Task states.
const (
	TaskRunning   TaskState = "running"
	TaskSucceeded TaskState = "succeeded"
	TaskFailed    TaskState = "failed"
)

// Rank orders task states reported at the same instant, so that applying
// events in any order converges: a later event wins, and at equal times the
// cautious reading wins: a failure outranks a success, which outranks a
// start.
func (s TaskState) Rank() int {
	switch s {
	case TaskFailed:
		return 3
	case TaskSucceeded:
		return 2
	case TaskRunning:
		return 1
	}
	return 0
}

// Task is the registry record of one migration task.
type Task struct {
	SessionID string    `firestore:"sessionId" json:"sessionId,omitempty"`
	TaskID    string    `firestore:"taskId" json:"taskId,omitempty"`
	State     TaskState `firestore:"state" json:"state,omitempty"`
	// StateTime is the source time of the event that set State.
	StateTime    time.Time `firestore:"stateTime" json:"stateTime,omitzero"`
	StateEventID string    `firestore:"stateEventId" json:"stateEventId,omitempty"`
	// FailedAt is the source time of the task's latest failure, whatever
	// its state is now; FailureSeenAt is when snapsweep saw that failure.
	// The failed-task retention of the snapshots taken before it counts
	// from the later of the two.
	FailedAt      time.Time `firestore:"failedAt,omitempty" json:"failedAt,omitzero"`
	FailureSeenAt time.Time `firestore:"failureSeenAt,omitempty" json:"failureSeenAt,omitzero"`
	StartedAt     time.Time `firestore:"startedAt,omitempty" json:"startedAt,omitzero"`
	FinishedAt    time.Time `firestore:"finishedAt,omitempty" json:"finishedAt,omitzero"`
	Error         string    `firestore:"error,omitempty" json:"error,omitempty"`
	UpdatedAt     time.Time `firestore:"updatedAt" json:"updatedAt,omitzero"`
}

// Key returns the task's key.
func (t *Task) Key() TaskKey { return TaskKey{SessionID: t.SessionID, TaskID: t.TaskID} }

// SessionState is the state of a migration session.
type SessionState string

// Session states.
const (
	SessionRunning   SessionState = "running"
	SessionCompleted SessionState = "completed"
)

// Outcome is a session's cleanup outcome, judged against the failure tolerance.
type Outcome string

// Session cleanup outcomes.
const (
	OutcomePending           Outcome = "pending"
	OutcomeCleaned           Outcome = "cleaned"
	OutcomeCleanedWithErrors Outcome = "cleaned_with_errors"
	OutcomeCleanupFailed     Outcome = "cleanup_failed"
)

// Session is the registry record of one migration session.
type Session struct {
	SessionID   string       `firestore:"sessionId" json:"sessionId,omitempty"`
	State       SessionState `firestore:"state" json:"state,omitempty"`
	StartedAt   time.Time    `firestore:"startedAt" json:"startedAt,omitzero"`
	CompletedAt time.Time    `firestore:"completedAt,omitempty" json:"completedAt,omitzero"`
	Outcome     Outcome      `firestore:"outcome,omitempty" json:"outcome,omitempty"`
	// OutcomeAt is when the verdict was last written: the judge writes at
	// most one per interval, and the sweep judges again the sessions
	// whose verdict is younger than its window.
	OutcomeAt time.Time `firestore:"outcomeAt,omitempty" json:"outcomeAt,omitzero"`
	// Deleted and Failed are the counts the outcome was judged on.
	Deleted   int64     `firestore:"deleted,omitempty" json:"deleted,omitempty"`
	Failed    int64     `firestore:"failed,omitempty" json:"failed,omitempty"`
	UpdatedAt time.Time `firestore:"updatedAt" json:"updatedAt,omitzero"`
}

// Rejected is a message that can never be processed, kept for operators.
type Rejected struct {
	ID           string    `firestore:"id" json:"id,omitempty"` // document id: the message id, or a hash of the payload
	MessageID    string    `firestore:"messageId" json:"messageId,omitempty"`
	Endpoint     string    `firestore:"endpoint" json:"endpoint,omitempty"`
	Reason       string    `firestore:"reason" json:"reason,omitempty"`
	Field        string    `firestore:"field,omitempty" json:"field,omitempty"`
	Detail       string    `firestore:"detail" json:"detail,omitempty"`
	Payload      string    `firestore:"payload" json:"payload,omitempty"` // truncated to MaxRejectedPayload bytes
	Truncated    bool      `firestore:"truncated,omitempty" json:"truncated,omitempty"`
	Size         int       `firestore:"size" json:"size,omitempty"`
	ReceivedAt   time.Time `firestore:"receivedAt" json:"receivedAt,omitzero"`
	ExpireAt     time.Time `firestore:"expireAt" json:"expireAt,omitzero"`
	Subscription string    `firestore:"subscription,omitempty" json:"subscription,omitempty"`
}

// MaxRejectedPayload bounds the raw payload kept with a rejected message.
const MaxRejectedPayload = 16 << 10

// Query selects snapshots. Its fields choose one of the shapes in
// QueryShapes; any other combination is refused.
type Query struct {
	SessionID string
	TaskID    string
	States    []State
	// At most one range: ExpiresBefore (orders by expiresAt), UpdatedBefore
	// (orders by updatedAt) or CreatedBefore (orders by createdAt).
	ExpiresBefore time.Time
	UpdatedBefore time.Time
	CreatedBefore time.Time
	// OrderByCreated orders by creation time without a range.
	OrderByCreated bool
	Limit          int
	// After is the cursor returned by the previous page.
	After string
}

// Page is one page of a snapshot query.
type Page struct {
	Snapshots []Snapshot
	// Next is the cursor of the next page, empty on the last one.
	Next string
	// Reads counts the documents the page read (for cost accounting).
	Reads int
}

// Registry is everything the service needs from the registry: Firestore in
// production, Memory in the embedded demo. Both pass store/storetest.
type Registry interface {
	Ping(ctx context.Context) error
	GetSnapshot(ctx context.Context, key Key) (*Snapshot, error)
	UpdateSnapshot(ctx context.Context, key Key, task TaskKey, fn SnapshotFunc) (*Snapshot, error)
	UpdateSnapshotHint(ctx context.Context, key Key, hint TaskKey, fn SnapshotFunc) (*Snapshot, error)
	UpdateSnapshotOnly(ctx context.Context, key Key, fn SnapshotFunc) (*Snapshot, error)
	ApplySnapshotEvent(ctx context.Context, key Key, task TaskKey, mark Mark, fn SnapshotFunc) (*Snapshot, error)
	ListSnapshots(ctx context.Context, q Query) (Page, error)
	CountSnapshots(ctx context.Context, q Query) (int64, error)
	CountByState(ctx context.Context) (map[State]int64, error)
	GetTask(ctx context.Context, key TaskKey) (*Task, error)
	UpdateTask(ctx context.Context, key TaskKey, fn TaskFunc) (*Task, error)
	ApplyTaskEvent(ctx context.Context, key TaskKey, eventID string, fn TaskFunc) (*Task, error)
	ListTasks(ctx context.Context, sessionID string, state TaskState) ([]Task, error)
	GetSession(ctx context.Context, id string) (*Session, error)
	UpdateSession(ctx context.Context, id string, fn SessionFunc) (*Session, error)
	CreateSession(ctx context.Context, s *Session) (bool, error)
	ListSessions(ctx context.Context, limit int) ([]Session, error)
	ListSessionsByOutcome(ctx context.Context, outcome Outcome, limit int) ([]Session, error)
	ListSessionsJudgedSince(ctx context.Context, since time.Time, limit int) ([]Session, error)
	AddRejected(ctx context.Context, r Rejected) error
	ListRejected(ctx context.Context, limit int) ([]Rejected, error)
	MarkProcessed(ctx context.Context, eventID, hash string, at, expireAt time.Time) error
	Processed(ctx context.Context, eventID string) (hash string, found bool, err error)
	AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, name, holder string) error
	SaveHealth(ctx context.Context, h HealthRecord) error
	LatestHealth(ctx context.Context, n int) ([]HealthRecord, error)
}

var (
	_ Registry = (*Firestore)(nil)
	_ Registry = (*Memory)(nil)
)
