package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"cloud.google.com/go/firestore"
	"google.golang.org/api/iterator"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// SnapshotFunc computes the next version of a snapshot record from the
// current one (nil when absent) and its task (nil when unknown). Returning
// nil, nil writes nothing. It runs inside a transaction and may run more than
// once: it must not have side effects.
type SnapshotFunc func(cur *Snapshot, task *Task) (*Snapshot, error)

// TaskFunc computes the next version of a task record (nil when absent);
// nil, nil writes nothing. Pure, like SnapshotFunc.
type TaskFunc func(cur *Task) (*Task, error)

// SessionFunc computes the next version of a session record; nil, nil
// writes nothing. Pure, like SnapshotFunc.
type SessionFunc func(cur *Session) (*Session, error)

// HealthRecord is one stored health report (the report itself is JSON).
type HealthRecord struct {
	ID       string    `firestore:"id" json:"id,omitempty"`
	At       time.Time `firestore:"at" json:"at,omitzero"`
	Status   string    `firestore:"status" json:"status,omitempty"`
	Report   string    `firestore:"report" json:"report,omitempty"`
	ExpireAt time.Time `firestore:"expireAt" json:"expireAt,omitzero"`
}

// Firestore is the registry on Cloud Firestore (native mode).
type Firestore struct {
	client *firestore.Client
}

// NewFirestore returns a store on client; the caller owns and closes it.
func NewFirestore(client *firestore.Client) *Firestore {
	return &Firestore{client: client}
}

func (f *Firestore) col(name string) *firestore.CollectionRef { return f.client.Collection(name) }

// classify wraps err so that callers can tell transient trouble (answer
// 5xx, let Pub/Sub redeliver) from everything else.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ErrNotFound) {
		return err
	}
	switch status.Code(err) {
	case codes.NotFound:
		return fmt.Errorf("%s: %w", op, ErrNotFound)
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted, codes.ResourceExhausted,
		codes.Internal, codes.Canceled, codes.Unknown:
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	case codes.InvalidArgument:
		// A transaction begun before Firestore restarted (or one the
		// server dropped) is refused as invalid: the request itself is
		// fine, and a retry in a new transaction succeeds.
		if s, ok := status.FromError(err); ok && strings.Contains(s.Message(), "Transaction is invalid or closed") {
			return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
		}
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// Ping reads one document: it proves the database answers.
func (f *Firestore) Ping(ctx context.Context) error {
	_, err := f.col(CollectionLeases).Doc("ping").Get(ctx)
	if err != nil && !isNotFound(err) {
		return classify("ping firestore", err)
	}
	return nil
}

// GetSnapshot returns the snapshot record, or ErrNotFound.
func (f *Firestore) GetSnapshot(ctx context.Context, key Key) (*Snapshot, error) {
	doc, err := f.col(CollectionSnapshots).Doc(key.ID()).Get(ctx)
	if err != nil {
		return nil, classify("get snapshot "+key.String(), err)
	}
	var s Snapshot
	if err := doc.DataTo(&s); err != nil {
		return nil, fmt.Errorf("decode snapshot %s: %w", key, err)
	}
	return &s, nil
}

// UpdateSnapshot runs fn in a transaction on the snapshot record and its
// task. The task is task when given, else the one the current record names.
// It returns the record as written (or as read, when fn wrote nothing).
// A given task is read with the record in one round trip.
func (f *Firestore) UpdateSnapshot(ctx context.Context, key Key, task TaskKey, fn SnapshotFunc) (*Snapshot, error) {
	return f.updateSnapshot(ctx, key, taskRead{key: task, given: task.TaskID != ""}, nil, fn)
}

// UpdateSnapshotHint is UpdateSnapshot handing fn the task the current
// record names (the given one only when there is no record). The hint, the
// task the caller expects the record to name, is read with the record in
// one round trip; a record naming another task costs one more read.
func (f *Firestore) UpdateSnapshotHint(ctx context.Context, key Key, hint TaskKey, fn SnapshotFunc) (*Snapshot, error) {
	return f.updateSnapshot(ctx, key, taskRead{key: hint}, nil, fn)
}

// UpdateSnapshotOnly is UpdateSnapshot for transitions that do not look at
// the task: fn is handed nil, and only the record is read.
func (f *Firestore) UpdateSnapshotOnly(ctx context.Context, key Key, fn SnapshotFunc) (*Snapshot, error) {
	return f.updateSnapshot(ctx, key, taskRead{none: true}, nil, fn)
}

// ApplySnapshotEvent is UpdateSnapshot (with the given task) that also
// records the event as processed in the same commit, with a
// does-not-exist precondition instead of a read: an event applied before
// makes the commit fail, nothing is written, and the error is a
// *ProcessedError with the hash the event was applied with.
func (f *Firestore) ApplySnapshotEvent(ctx context.Context, key Key, task TaskKey, mark Mark, fn SnapshotFunc) (*Snapshot, error) {
	out, err := f.updateSnapshot(ctx, key, taskRead{key: task, given: true}, &mark, fn)
	if err == nil || !(status.Code(err) == codes.AlreadyExists || status.Code(err) == codes.FailedPrecondition ||
		errors.Is(err, ErrUnavailable)) {
		return out, err
	}
	// The marker may exist: an event applied before. Anything else was a
	// failure of its own, reported as such.
	hash, found, perr := f.Processed(ctx, mark.EventID)
	if perr != nil || !found {
		return nil, err
	}
	return nil, &ProcessedError{EventID: mark.EventID, Hash: hash}
}

// taskRead says which task a snapshot transaction reads for its function.
type taskRead struct {
	key TaskKey
	// given: key is the task to hand over, whatever the record names;
	// otherwise key is a hint and the record's own task is handed over.
	given bool
	// none: no task is read.
	none bool
}

func (f *Firestore) updateSnapshot(ctx context.Context, key Key, tr taskRead, mark *Mark, fn SnapshotFunc) (*Snapshot, error) {
	ref := f.col(CollectionSnapshots).Doc(key.ID())
	var out *Snapshot
	err := f.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		out = nil
		refs := []*firestore.DocumentRef{ref}
		if !tr.none && tr.key.TaskID != "" {
			refs = append(refs, f.col(CollectionTasks).Doc(tr.key.ID()))
		}
		docs, err := tx.GetAll(refs)
		if err != nil {
			return err
		}
		var cur *Snapshot
		if docs[0].Exists() {
			cur = new(Snapshot)
			if err := docs[0].DataTo(cur); err != nil {
				return fmt.Errorf("decode snapshot: %w", err)
			}
		}
		var t *Task
		tdoc := (*firestore.DocumentSnapshot)(nil)
		if len(docs) > 1 {
			tdoc = docs[1]
		}
		if !tr.none && !tr.given && cur != nil && cur.TaskID != "" && cur.TaskKey() != tr.key {
			// The record names another task than the hint: read that one.
			tdoc, err = tx.Get(f.col(CollectionTasks).Doc(cur.TaskKey().ID()))
			if err != nil && !isNotFound(err) {
				return err
			}
		}
		if tdoc != nil && tdoc.Exists() {
			t = new(Task)
			if err := tdoc.DataTo(t); err != nil {
				return fmt.Errorf("decode task: %w", err)
			}
		}
		next, err := fn(cur, t)
		if err != nil {
			return err
		}
		if mark != nil {
			if err := tx.Create(f.col(CollectionProcessed).Doc(processedID(mark.EventID)), mark.doc()); err != nil {
				return err
			}
		}
		if next == nil {
			out = cur
			return nil
		}
		next.Project, next.Name = key.Project, key.Name
		next.Archived = false
		if old := next.Replaced; old != nil {
			// A new generation of the name: the previous record stays
			// readable under its own id, written in the same transaction.
			old.Project, old.Name, old.Archived = key.Project, key.Name, true
			if err := tx.Set(f.col(CollectionSnapshots).Doc(old.DocID()), old); err != nil {
				return err
			}
		}
		out = next
		return tx.Set(ref, next)
	})
	if err != nil {
		if mark != nil && (status.Code(err) == codes.AlreadyExists || status.Code(err) == codes.FailedPrecondition) {
			return nil, err
		}
		return nil, classify("update snapshot "+key.String(), err)
	}
	return out, nil
}

// PutSnapshot writes a record as is, outside any transaction. It is meant
// for seeding tests and benchmarks and is not part of Registry: the service
// writes records only in transactions, through lifecycle.
func (f *Firestore) PutSnapshot(ctx context.Context, s *Snapshot) error {
	_, err := f.col(CollectionSnapshots).Doc(s.Key().ID()).Set(ctx, s)
	return classify("put snapshot "+s.Key().String(), err)
}

// ListSnapshots runs one page of q.
func (f *Firestore) ListSnapshots(ctx context.Context, q Query) (Page, error) {
	if _, err := q.Shape(); err != nil {
		return Page{}, err
	}
	fq, field, err := f.snapshotQuery(q)
	if err != nil {
		return Page{}, err
	}
	limit := q.Limit
	if limit <= 0 || limit > 1000 {
		limit = 500
	}
	if q.After != "" {
		c, err := decodeCursor(q.After)
		if err != nil {
			return Page{}, err
		}
		if field != "" {
			fq = fq.StartAfter(c.T, c.ID)
		} else {
			fq = fq.StartAfter(c.ID)
		}
	}
	fq = fq.Limit(limit)
	docs, err := fq.Documents(ctx).GetAll()
	if err != nil {
		return Page{}, classify("list snapshots", err)
	}
	page := Page{Reads: len(docs)}
	if len(docs) == 0 {
		page.Reads = 1 // a query that returns nothing still bills one read
	}
	for _, d := range docs {
		var s Snapshot
		if err := d.DataTo(&s); err != nil {
			return Page{}, fmt.Errorf("decode snapshot %s: %w", d.Ref.ID, err)
		}
		page.Snapshots = append(page.Snapshots, s)
	}
	if len(docs) == limit {
		last := docs[len(docs)-1]
		page.Next = encodeCursor(cursor{T: orderValue(field, &page.Snapshots[len(page.Snapshots)-1]), ID: last.Ref.ID})
	}
	return page, nil
}

func (f *Firestore) snapshotQuery(q Query) (firestore.Query, string, error) {
	fq := f.col(CollectionSnapshots).Query
	if q.SessionID != "" {
		fq = fq.Where("sessionId", "==", q.SessionID)
	}
	if q.TaskID != "" {
		fq = fq.Where("taskId", "==", q.TaskID)
	}
	switch len(q.States) {
	case 0:
	case 1:
		fq = fq.Where("state", "==", string(q.States[0]))
	default:
		states := make([]string, len(q.States))
		for i, s := range q.States {
			states[i] = string(s)
		}
		fq = fq.Where("state", "in", states)
	}
	field, bound, err := q.rangeField()
	if err != nil {
		return fq, "", err
	}
	if field != "" {
		if !bound.IsZero() {
			fq = fq.Where(field, "<=", bound)
		}
		fq = fq.OrderBy(field, firestore.Asc)
	}
	fq = fq.OrderBy(firestore.DocumentID, firestore.Asc)
	return fq, field, nil
}

// CountSnapshots counts the records q selects with an aggregation query
// (billed as one read per 1,000 entries, not one per document).
func (f *Firestore) CountSnapshots(ctx context.Context, q Query) (int64, error) {
	if _, err := q.Shape(); err != nil {
		return 0, err
	}
	fq, _, err := f.snapshotQuery(q)
	if err != nil {
		return 0, err
	}
	res, err := fq.NewAggregationQuery().WithCount("n").Get(ctx)
	if err != nil {
		return 0, classify("count snapshots", err)
	}
	return aggregateInt(res["n"])
}

func aggregateInt(v any) (int64, error) {
	switch n := v.(type) {
	case int64:
		return n, nil
	case interface{ GetIntegerValue() int64 }:
		return n.GetIntegerValue(), nil
	}
	return 0, fmt.Errorf("unexpected count type %T", v)
}

// CountByState counts snapshots in every state.
func (f *Firestore) CountByState(ctx context.Context) (map[State]int64, error) {
	out := make(map[State]int64)
	for _, s := range States() {
		n, err := f.CountSnapshots(ctx, Query{States: []State{s}})
		if err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, nil
}

// GetTask returns the task record, or ErrNotFound.
func (f *Firestore) GetTask(ctx context.Context, key TaskKey) (*Task, error) {
	doc, err := f.col(CollectionTasks).Doc(key.ID()).Get(ctx)
	if err != nil {
		return nil, classify("get task", err)
	}
	var t Task
	if err := doc.DataTo(&t); err != nil {
		return nil, fmt.Errorf("decode task: %w", err)
	}
	return &t, nil
}

// UpdateTask runs fn in a transaction on the task record.
func (f *Firestore) UpdateTask(ctx context.Context, key TaskKey, fn TaskFunc) (*Task, error) {
	out, err := update(ctx, f.client, f.col(CollectionTasks).Doc(key.ID()), func(cur *Task) (*Task, error) {
		next, err := fn(cur)
		if next != nil {
			next.SessionID, next.TaskID = key.SessionID, key.TaskID
		}
		return next, err
	})
	if err != nil {
		return nil, classify("update task", err)
	}
	return out, nil
}

// ApplyTaskEvent is UpdateTask for an event that must not have been applied
// before: the event's processed marker is read with the task in one round
// trip, and if it exists nothing is written and the error is a
// *ProcessedError. (The marker itself is written by MarkProcessed once the
// event's work is done.)
func (f *Firestore) ApplyTaskEvent(ctx context.Context, key TaskKey, eventID string, fn TaskFunc) (*Task, error) {
	ref := f.col(CollectionTasks).Doc(key.ID())
	var out *Task
	var applied *ProcessedError
	err := f.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		out, applied = nil, nil
		docs, err := tx.GetAll([]*firestore.DocumentRef{ref, f.col(CollectionProcessed).Doc(processedID(eventID))})
		if err != nil {
			return err
		}
		if docs[1].Exists() {
			h, _ := docs[1].Data()["hash"].(string)
			applied = &ProcessedError{EventID: eventID, Hash: h}
			return nil
		}
		var cur *Task
		if docs[0].Exists() {
			cur = new(Task)
			if err := docs[0].DataTo(cur); err != nil {
				return fmt.Errorf("decode task: %w", err)
			}
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if next == nil {
			out = cur
			return nil
		}
		next.SessionID, next.TaskID = key.SessionID, key.TaskID
		out = next
		return tx.Set(ref, next)
	})
	if err != nil {
		return nil, classify("update task", err)
	}
	if applied != nil {
		return nil, applied
	}
	return out, nil
}

// ListTasks returns the tasks of a session in a state, all pages.
func (f *Firestore) ListTasks(ctx context.Context, sessionID string, state TaskState) ([]Task, error) {
	it := f.col(CollectionTasks).Where("sessionId", "==", sessionID).Where("state", "==", string(state)).Documents(ctx)
	defer it.Stop()
	var out []Task
	for {
		doc, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return out, nil
		}
		if err != nil {
			return nil, classify("list tasks", err)
		}
		var t Task
		if err := doc.DataTo(&t); err != nil {
			return nil, fmt.Errorf("decode task: %w", err)
		}
		out = append(out, t)
	}
}

// GetSession returns the session record, or ErrNotFound.
func (f *Firestore) GetSession(ctx context.Context, id string) (*Session, error) {
	doc, err := f.col(CollectionSessions).Doc(id).Get(ctx)
	if err != nil {
		return nil, classify("get session", err)
	}
	var s Session
	if err := doc.DataTo(&s); err != nil {
		return nil, fmt.Errorf("decode session: %w", err)
	}
	return &s, nil
}

// UpdateSession runs fn in a transaction on the session record.
func (f *Firestore) UpdateSession(ctx context.Context, id string, fn SessionFunc) (*Session, error) {
	out, err := update(ctx, f.client, f.col(CollectionSessions).Doc(id), func(cur *Session) (*Session, error) {
		next, err := fn(cur)
		if next != nil {
			next.SessionID = id
		}
		return next, err
	})
	if err != nil {
		return nil, classify("update session", err)
	}
	return out, nil
}

// update runs fn on one document in a transaction: it reads the document
// (nil when absent), and writes what fn returns unless that is nil. It
// returns the record as written, or as read when nothing was written.
func update[T any](ctx context.Context, client *firestore.Client, ref *firestore.DocumentRef, fn func(cur *T) (*T, error)) (*T, error) {
	var out *T
	err := client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		out = nil
		var cur *T
		doc, err := tx.Get(ref)
		switch {
		case isNotFound(err):
		case err != nil:
			return err
		default:
			cur = new(T)
			if err := doc.DataTo(cur); err != nil {
				return fmt.Errorf("decode %s: %w", ref.Parent.ID, err)
			}
		}
		next, err := fn(cur)
		if err != nil {
			return err
		}
		if next == nil {
			out = cur
			return nil
		}
		out = next
		return tx.Set(ref, next)
	})
	return out, err
}

// CreateSession writes a session record if none exists, without a
// transaction: the first events of a new session arrive together, and a
// create with a does-not-exist precondition never contends. It reports
// whether this call created it.
func (f *Firestore) CreateSession(ctx context.Context, s *Session) (bool, error) {
	_, err := f.col(CollectionSessions).Doc(s.SessionID).Create(ctx, s)
	if status.Code(err) == codes.AlreadyExists {
		return false, nil
	}
	if err != nil {
		return false, classify("create session", err)
	}
	return true, nil
}

// ListSessions returns the most recently started sessions.
func (f *Firestore) ListSessions(ctx context.Context, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = 100
	}
	return getAll[Session](ctx, f.col(CollectionSessions).OrderBy("startedAt", firestore.Desc).Limit(limit), "list sessions")
}

// ListSessionsByOutcome returns up to limit sessions whose cleanup outcome
// is outcome (the sweep re-judges completed sessions still pending).
func (f *Firestore) ListSessionsByOutcome(ctx context.Context, outcome Outcome, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = 100
	}
	return getAll[Session](ctx, f.col(CollectionSessions).Where("outcome", "==", string(outcome)).Limit(limit), "list sessions by outcome")
}

// ListSessionsJudgedSince returns up to limit sessions whose verdict was
// written at or after since, the most recent first (the sweep judges them
// again: the engine's judgements are debounced).
func (f *Firestore) ListSessionsJudgedSince(ctx context.Context, since time.Time, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = 100
	}
	return getAll[Session](ctx, f.col(CollectionSessions).Where("outcomeAt", ">=", since).OrderBy("outcomeAt", firestore.Desc).Limit(limit), "list recently judged sessions")
}

// AddRejected records a message that can never be processed. Recording the
// same message twice keeps the first record.
func (f *Firestore) AddRejected(ctx context.Context, r Rejected) error {
	_, err := f.col(CollectionRejected).Doc(r.ID).Create(ctx, r)
	if status.Code(err) == codes.AlreadyExists {
		return nil
	}
	return classify("record rejected message", err)
}

// ListRejected returns the most recent rejected messages.
func (f *Firestore) ListRejected(ctx context.Context, limit int) ([]Rejected, error) {
	if limit <= 0 {
		limit = 100
	}
	return getAll[Rejected](ctx, f.col(CollectionRejected).OrderBy("receivedAt", firestore.Desc).Limit(limit), "list rejected")
}

// processedID maps an event id (any printable text) to a document id.
func processedID(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return hex.EncodeToString(sum[:])
}

// Mark is the processed-event marker of an event applied in one snapshot
// transaction (ApplySnapshotEvent).
type Mark struct {
	EventID, Hash string
	// At is when it was applied; ExpireAt when the marker expires (TTL).
	At, ExpireAt time.Time
}

func (m *Mark) doc() map[string]any {
	return map[string]any{"eventId": m.EventID, "hash": m.Hash, "at": m.At, TTLField: m.ExpireAt}
}

// ProcessedError says that an event was applied before (its marker
// exists): nothing was written.
type ProcessedError struct {
	EventID string
	// Hash is the content hash the event was applied with.
	Hash string
}

func (e *ProcessedError) Error() string { return fmt.Sprintf("event %q was applied before", e.EventID) }

// MarkProcessed records that an event was fully applied, with the hash of
// its content, so that a redelivery can be acknowledged without work and a
// different event reusing the id is told apart. It expires at expireAt.
func (f *Firestore) MarkProcessed(ctx context.Context, eventID, hash string, at, expireAt time.Time) error {
	m := Mark{EventID: eventID, Hash: hash, At: at, ExpireAt: expireAt}
	_, err := f.col(CollectionProcessed).Doc(processedID(eventID)).Set(ctx, m.doc())
	return classify("mark event processed", err)
}

// Processed reports whether an event was fully applied before, and the
// content hash it was applied with (empty for markers older than hashes).
func (f *Firestore) Processed(ctx context.Context, eventID string) (string, bool, error) {
	doc, err := f.col(CollectionProcessed).Doc(processedID(eventID)).Get(ctx)
	if isNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, classify("read processed marker", err)
	}
	h, _ := doc.Data()["hash"].(string)
	return h, true, nil
}

type lease struct {
	Holder string    `firestore:"holder" json:"holder,omitempty"`
	Until  time.Time `firestore:"until" json:"until,omitzero"`
}

// AcquireLease takes the named lease for holder until now+ttl, if it is free,
// expired or already the holder's. It reports whether holder has it.
func (f *Firestore) AcquireLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	ref := f.col(CollectionLeases).Doc(name)
	got := false
	err := f.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		got = false
		doc, err := tx.Get(ref)
		if err != nil && !isNotFound(err) {
			return err
		}
		if err == nil {
			var l lease
			if err := doc.DataTo(&l); err != nil {
				return fmt.Errorf("decode lease: %w", err)
			}
			if l.Holder != holder && l.Until.After(now) {
				return nil
			}
		}
		got = true
		return tx.Set(ref, lease{Holder: holder, Until: now.Add(ttl)})
	})
	if err != nil {
		return false, classify("acquire lease "+name, err)
	}
	return got, nil
}

// ReleaseLease frees the named lease if holder has it.
func (f *Firestore) ReleaseLease(ctx context.Context, name, holder string) error {
	ref := f.col(CollectionLeases).Doc(name)
	err := f.client.RunTransaction(ctx, func(ctx context.Context, tx *firestore.Transaction) error {
		doc, err := tx.Get(ref)
		if isNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		var l lease
		if err := doc.DataTo(&l); err != nil {
			return fmt.Errorf("decode lease: %w", err)
		}
		if l.Holder != holder {
			return nil
		}
		return tx.Delete(ref)
	})
	return classify("release lease "+name, err)
}

// SaveHealth stores a health report.
func (f *Firestore) SaveHealth(ctx context.Context, h HealthRecord) error {
	_, err := f.col(CollectionHealth).Doc(h.ID).Set(ctx, h)
	return classify("save health report", err)
}

// LatestHealth returns the n most recent health reports, newest first.
func (f *Firestore) LatestHealth(ctx context.Context, n int) ([]HealthRecord, error) {
	return getAll[HealthRecord](ctx, f.col(CollectionHealth).OrderBy("at", firestore.Desc).Limit(n), "read health reports")
}

// getAll runs a bounded query and decodes every document.
func getAll[T any](ctx context.Context, q firestore.Query, op string) ([]T, error) {
	docs, err := q.Documents(ctx).GetAll()
	if err != nil {
		return nil, classify(op, err)
	}
	out := make([]T, 0, len(docs))
	for _, d := range docs {
		var v T
		if err := d.DataTo(&v); err != nil {
			return nil, fmt.Errorf("%s: decode %s: %w", op, d.Ref.ID, err)
		}
		out = append(out, v)
	}
	return out, nil
}
