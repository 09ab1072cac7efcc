// Package reporter is the job side of snapsweep: a migration job written in
// Go tells snapsweep what it does (sessions, tasks, snapshots) by publishing
// migration events to Pub/Sub, and asks the running service how the
// session's cleanup went.
//
// It depends on snapsweep's events and status packages (the /status wire
// types and client) and the Pub/Sub client only, so a job can import it
// without pulling in the service.
//
// A job creates one Reporter per session, puts Labels() on every snapshot it
// creates (snapsweep deletes only snapshots that carry them), and reports:
//
//	SessionStarted
//	  per task: TaskStarted, SnapshotCreated (after the snapshot exists), then TaskCompleted or TaskFailed
//	SessionCompleted
//	Close
//
// A job should report each snapshot with Compute's numeric id (the
// targetId of the insert operation; SnapshotRef.ID, or
// RegisterSnapshotWithID): a snapshot name can be reused once the snapshot
// is deleted, and with the id snapsweep never deletes a different snapshot
// that happens to carry the same name.
//
// Every method validates its event with the same rules as the service before
// it publishes anything, and publishes asynchronously; Flush and Close wait
// for the publishes and report those that failed.
package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/status"
)

// Defaults that mirror the service's configuration.
const (
	// DefaultTopic is the topic of migration events (SNAPSWEEP_EVENTS_TOPIC).
	DefaultTopic = "migration-events"
	// DefaultLabelKey is the snapshot label that marks snapsweep's ownership
	// (SNAPSWEEP_SESSION_LABEL).
	DefaultLabelKey = "migration-session"
)

// Message attributes set on every published event, so that subscribers can
// filter without decoding the data.
const (
	AttrType      = "type"
	AttrSessionID = "sessionId"
)

// ErrClosed is returned by the reporting methods after Close.
var ErrClosed = errors.New("reporter: closed")

// labelKeyRE is the format of a GCE label key.
var labelKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// Option configures a Reporter.
type Option func(*Reporter)

// WithLabelKey sets the label key snapshots must carry; it must equal the
// service's SNAPSWEEP_SESSION_LABEL (default "migration-session").
func WithLabelKey(key string) Option { return func(r *Reporter) { r.labelKey = key } }

// WithClock sets the clock that stamps events (default time.Now).
func WithClock(now func() time.Time) Option { return func(r *Reporter) { r.now = now } }

// WithIDFunc sets the generator of event ids (default: a random UUID). Ids
// must be unique: the service treats two events with one id as one event.
func WithIDFunc(newID func() string) Option { return func(r *Reporter) { r.newID = newID } }

// Reporter publishes the migration events of one session. It is safe for
// concurrent use by the tasks of a job.
type Reporter struct {
	pub       *pubsub.Publisher
	sessionID string
	labelKey  string
	now       func() time.Time
	newID     func() string

	mu      sync.Mutex
	pending []pending
	closed  bool
}

// pending is a publish that Flush has not yet waited for.
type pending struct {
	ev  events.Event
	res *pubsub.PublishResult
}

// PublishError is one event that could not be published.
type PublishError struct {
	// Event is the event as it was sent: publish it again with the same id
	// to retry (the service treats it as the same event).
	Event events.Event
	Err   error
}

// Error names the event and why its publish failed.
func (e *PublishError) Error() string {
	return fmt.Sprintf("publish %s event %s: %v", e.Event.Type, e.Event.ID, e.Err)
}

// Unwrap returns the Pub/Sub error.
func (e *PublishError) Unwrap() error { return e.Err }

// New returns a reporter for session sessionID that publishes to topic (a
// topic id in the client's project, or a full projects/P/topics/T name;
// empty means DefaultTopic). The client stays the caller's: close it after
// the reporter.
func New(client *pubsub.Client, topic, sessionID string, opts ...Option) (*Reporter, error) {
	r := &Reporter{sessionID: sessionID, labelKey: DefaultLabelKey, now: time.Now, newID: uuid.NewString}
	for _, o := range opts {
		o(r)
	}
	var errs []error
	if client == nil {
		errs = append(errs, errors.New("reporter: a Pub/Sub client is required"))
	}
	if !events.ValidSessionID(sessionID) {
		errs = append(errs, fmt.Errorf("reporter: session id %q must match ^[a-z0-9][a-z0-9_-]{0,62}$ (it is a GCE label value)", sessionID))
	}
	if !labelKeyRE.MatchString(r.labelKey) {
		errs = append(errs, fmt.Errorf("reporter: label key %q must match %s", r.labelKey, labelKeyRE))
	}
	if r.now == nil || r.newID == nil {
		errs = append(errs, errors.New("reporter: clock and id generator must not be nil"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if topic == "" {
		topic = DefaultTopic
	}
	r.pub = client.Publisher(topic)
	return r, nil
}

// SessionID returns the session the reporter reports for.
func (r *Reporter) SessionID() string { return r.sessionID }

// Labels returns the labels a job must put on every snapshot of the session
// when it creates it: snapsweep deletes a snapshot only if its ownership
// label equals the session id it was registered under. The map is new on
// every call.
func (r *Reporter) Labels() map[string]string { return map[string]string{r.labelKey: r.sessionID} }

// SessionStarted reports that the session began (optional for the service,
// useful for status).
func (r *Reporter) SessionStarted(ctx context.Context) error {
	return r.publish(ctx, events.Event{Type: events.SessionStarted})
}

// SessionCompleted reports that the job finished every task: the service
// cleans up the snapshots of succeeded tasks and judges the session's
// cleanup outcome.
func (r *Reporter) SessionCompleted(ctx context.Context) error {
	return r.publish(ctx, events.Event{Type: events.SessionCompleted})
}

// TaskStarted reports that work on task taskID (one VM) began.
func (r *Reporter) TaskStarted(ctx context.Context, taskID string) error {
	return r.publish(ctx, events.Event{Type: events.TaskStarted, TaskID: taskID})
}

// TaskCompleted reports that task taskID succeeded: its snapshots are no
// longer needed and the service deletes them.
func (r *Reporter) TaskCompleted(ctx context.Context, taskID string) error {
	return r.publish(ctx, events.Event{Type: events.TaskCompleted, TaskID: taskID})
}

// TaskFailed reports that task taskID failed; reason says why. The service
// keeps its snapshots (the way back) for the failed-task retention.
func (r *Reporter) TaskFailed(ctx context.Context, taskID, reason string) error {
	return r.publish(ctx, events.Event{Type: events.TaskFailed, TaskID: taskID, Error: reason})
}

// SnapshotCreated registers a snapshot the job took for task taskID. Report
// it once the snapshot exists, and create the snapshot with Labels(). Set
// snap.ID to the snapshot's Compute id (strconv.FormatUint of the insert
// operation's targetId) whenever the job has it: the service then deletes
// only that snapshot under this record, never a later one that reuses the
// name. Without it, the service takes the id from its first read of the
// snapshot.
func (r *Reporter) SnapshotCreated(ctx context.Context, taskID string, snap events.SnapshotRef) error {
	return r.publish(ctx, events.Event{Type: events.SnapshotCreated, TaskID: taskID, Snapshot: &snap})
}

// RegisterSnapshot is SnapshotCreated for a snapshot known by project and
// name only. Prefer RegisterSnapshotWithID when the job has the id.
func (r *Reporter) RegisterSnapshot(ctx context.Context, taskID, project, name string) error {
	return r.SnapshotCreated(ctx, taskID, events.SnapshotRef{Project: project, Name: name})
}

// RegisterSnapshotWithID is SnapshotCreated for a snapshot known by project,
// name and Compute's numeric id: the targetId of the insert operation that
// created it (computepb.Operation.GetTargetId). An id of 0, which is what a
// getter returns when the operation carries none, is rejected as an invalid
// snapshot.id; use RegisterSnapshot for a snapshot without an id.
func (r *Reporter) RegisterSnapshotWithID(ctx context.Context, taskID, project, name string, id uint64) error {
	return r.SnapshotCreated(ctx, taskID, events.SnapshotRef{Project: project, Name: name, ID: strconv.FormatUint(id, 10)})
}

// SnapshotDeleted reports that the job deleted a snapshot itself; the
// service marks it deleted and calls no API. Set snap.ID as for
// SnapshotCreated: it says which snapshot of that name the job deleted.
func (r *Reporter) SnapshotDeleted(ctx context.Context, taskID string, snap events.SnapshotRef) error {
	return r.publish(ctx, events.Event{Type: events.SnapshotDeleted, TaskID: taskID, Snapshot: &snap})
}

// publish completes ev, validates it and starts publishing it. An invalid
// event is returned as its *events.RejectError and nothing is published.
func (r *Reporter) publish(ctx context.Context, ev events.Event) error {
	ev.ID, ev.Time, ev.SessionID = r.newID(), r.now().UTC(), r.sessionID
	msg, err := NewMessage(ev)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.pending = append(r.pending, pending{ev: ev, res: r.pub.Publish(ctx, msg)})
	return nil
}

// Flush waits until every event reported so far is published or failed,
// and returns the failures joined (each a *PublishError naming the event's
// id and type), or nil. A failure is reported once. If ctx ends first, the
// events not yet settled stay pending for the next Flush and ctx's error is
// part of the result.
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()

	var errs []error
	for i, p := range batch {
		select {
		case <-p.res.Ready():
		case <-ctx.Done():
			r.mu.Lock()
			r.pending = append(batch[i:len(batch):len(batch)], r.pending...)
			r.mu.Unlock()
			return errors.Join(append(errs, fmt.Errorf("flush: %d events still publishing: %w", len(batch)-i, ctx.Err()))...)
		}
		if _, err := p.res.Get(ctx); err != nil {
			errs = append(errs, &PublishError{Event: p.ev, Err: err})
		}
	}
	return errors.Join(errs...)
}

// Close flushes (see Flush) and stops the publisher. Later reports return
// ErrClosed; a second Close returns nil.
func (r *Reporter) Close(ctx context.Context) error {
	r.mu.Lock()
	already := r.closed
	r.closed = true
	r.mu.Unlock()
	if already {
		return nil
	}
	err := r.Flush(ctx)
	stopped := make(chan struct{})
	go func() {
		r.pub.Stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		err = errors.Join(err, fmt.Errorf("stop publisher: %w", ctx.Err()))
	}
	return err
}

// NewMessage validates ev with the service's rules and returns it as the
// Pub/Sub message a Reporter would publish: the event as JSON, with
// attributes AttrType and AttrSessionID. An invalid event is returned as
// its *events.RejectError. It is for tools that build events themselves
// (such as `snapsweep publish`).
func NewMessage(ev events.Event) (*pubsub.Message, error) {
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(ev)
	if err != nil { // unreachable for a valid event
		return nil, fmt.Errorf("encode %s event %s: %w", ev.Type, ev.ID, err)
	}
	return &pubsub.Message{Data: data, Attributes: map[string]string{
		AttrType:      string(ev.Type),
		AttrSessionID: ev.SessionID,
	}}, nil
}

// Outcome is a completed session's cleanup outcome, as the service judges it
// against SNAPSWEEP_SESSION_FAILURE_TOLERANCE (package status).
type Outcome = status.Outcome

// The outcomes a session can have; a session that is not completed has none
// ("").
const (
	// OutcomePending: the session is completed and deletions are under way.
	OutcomePending = status.OutcomePending
	// OutcomeCleaned: every snapshot due for deletion is deleted.
	OutcomeCleaned = status.OutcomeCleaned
	// OutcomeCleanedWithErrors: some deletions failed or were refused, within
	// the failure tolerance.
	OutcomeCleanedWithErrors = status.OutcomeCleanedWithErrors
	// OutcomeCleanupFailed: more deletions failed than the tolerance allows;
	// an operator must look.
	OutcomeCleanupFailed = status.OutcomeCleanupFailed
)

// Session is the service's record of a session.
type Session = status.SessionRecord

// SessionStatus is the answer of GET /status?session=ID (package status):
// the session's record, its snapshots counted by registry state (active,
// retained, cleanup_pending, deleting, deleted, failed, refused, held,
// vanished), its tasks by state and what its cleanup is worth.
type SessionStatus = status.Session

// ErrSessionNotFound is returned by Status when the service knows no such
// session (yet: events are processed asynchronously).
var ErrSessionNotFound = status.ErrSessionNotFound

// CleanupStatus asks the service at serviceURL (its base URL, e.g.
// https://snapsweep-xyz.a.run.app) for this session's status. See Status.
func (r *Reporter) CleanupStatus(ctx context.Context, serviceURL string, client *http.Client) (SessionStatus, error) {
	return Status(ctx, client, serviceURL, r.sessionID)
}

// Status asks the service at serviceURL (its base URL) for the status of
// session sessionID through GET /status?session=ID, with package status's
// client. client carries the caller's credentials (on Cloud Run, e.g.
// idtoken.NewClient with the service URL as audience); nil means
// http.DefaultClient. A session the service does not know is
// ErrSessionNotFound.
func Status(ctx context.Context, client *http.Client, serviceURL, sessionID string) (SessionStatus, error) {
	c, err := status.NewClient(serviceURL, client)
	if err != nil {
		return SessionStatus{}, fmt.Errorf("reporter: %w", err)
	}
	st, err := c.Session(ctx, sessionID)
	if err != nil {
		return SessionStatus{}, fmt.Errorf("reporter: %w", err)
	}
	return *st, nil
}
