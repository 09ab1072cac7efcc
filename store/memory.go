package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"
)

// Memory is the embedded registry of the local demo and of benchmarks: the
// same contract as Firestore (store/storetest), in one process's memory. It
// is not for production: Cloud Run instances share nothing in memory.
type Memory struct {
	mu        sync.Mutex
	snapshots map[string]Snapshot
	tasks     map[string]Task
	sessions  map[string]Session
	rejected  map[string]Rejected
	processed map[string]string
	leases    map[string]lease
	health    map[string]HealthRecord
}

// NewMemory returns an empty embedded registry.
func NewMemory() *Memory {
	return &Memory{
		snapshots: map[string]Snapshot{}, tasks: map[string]Task{}, sessions: map[string]Session{},
		rejected: map[string]Rejected{}, processed: map[string]string{}, leases: map[string]lease{},
		health: map[string]HealthRecord{},
	}
}

// Ping always succeeds.
func (m *Memory) Ping(context.Context) error { return nil }

// GetSnapshot returns the snapshot record, or ErrNotFound.
func (m *Memory) GetSnapshot(_ context.Context, key Key) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.snapshots[key.ID()]
	if !ok {
		return nil, fmt.Errorf("get snapshot %s: %w", key, ErrNotFound)
	}
	return &s, nil
}

// UpdateSnapshot runs fn under the store's lock (the transaction).
func (m *Memory) UpdateSnapshot(_ context.Context, key Key, task TaskKey, fn SnapshotFunc) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.updateSnapshot(key, taskRead{key: task, given: task.TaskID != ""}, fn)
}

// UpdateSnapshotHint hands fn the task the record names (the hint when
// there is no record), as Firestore does.
func (m *Memory) UpdateSnapshotHint(_ context.Context, key Key, hint TaskKey, fn SnapshotFunc) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.updateSnapshot(key, taskRead{key: hint}, fn)
}

// UpdateSnapshotOnly hands fn no task.
func (m *Memory) UpdateSnapshotOnly(_ context.Context, key Key, fn SnapshotFunc) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.updateSnapshot(key, taskRead{none: true}, fn)
}

// ApplySnapshotEvent is UpdateSnapshot that records the event as
// processed in the same transaction, or returns *ProcessedError (writing
// nothing) when it was applied before.
func (m *Memory) ApplySnapshotEvent(_ context.Context, key Key, task TaskKey, mark Mark, fn SnapshotFunc) (*Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.processed[mark.EventID]; ok {
		// Firestore runs fn before its commit fails: so does this.
		if _, err := m.dryRun(key, task, fn); err != nil {
			return nil, err
		}
		return nil, &ProcessedError{EventID: mark.EventID, Hash: h}
	}
	out, err := m.updateSnapshot(key, taskRead{key: task, given: true}, fn)
	if err == nil {
		m.processed[mark.EventID] = mark.Hash
	}
	return out, err
}

// dryRun runs fn on the record as it is, writing nothing.
func (m *Memory) dryRun(key Key, task TaskKey, fn SnapshotFunc) (*Snapshot, error) {
	cur, t := m.read(key, taskRead{key: task, given: true})
	return fn(cur, t)
}

func (m *Memory) read(key Key, tr taskRead) (*Snapshot, *Task) {
	var cur *Snapshot
	if s, ok := m.snapshots[key.ID()]; ok {
		cur = &s
	}
	tk := tr.key
	if !tr.given && cur != nil && cur.TaskID != "" {
		tk = cur.TaskKey()
	}
	var t *Task
	if !tr.none && tk.TaskID != "" {
		if x, ok := m.tasks[tk.ID()]; ok {
			t = &x
		}
	}
	return cur, t
}

func (m *Memory) updateSnapshot(key Key, tr taskRead, fn SnapshotFunc) (*Snapshot, error) {
	cur, t := m.read(key, tr)
	var snapCopy *Snapshot
	if cur != nil {
		c := *cur
		snapCopy = &c
	}
	next, err := fn(snapCopy, t)
	if err != nil {
		return nil, fmt.Errorf("update snapshot %s: %w", key, err)
	}
	if next == nil {
		return cur, nil
	}
	next.Project, next.Name = key.Project, key.Name
	next.Archived = false
	if old := next.Replaced; old != nil {
		archived := *old
		archived.Project, archived.Name, archived.Archived = key.Project, key.Name, true
		m.snapshots[archived.DocID()] = archived
		next.Replaced = nil
	}
	m.snapshots[key.ID()] = *next
	out := *next
	return &out, nil
}

// PutSnapshot writes a record as is, for seeding tests and benchmarks; it
// is not part of store.Registry: the service writes records only in
// transactions, through lifecycle.
func (m *Memory) PutSnapshot(_ context.Context, s *Snapshot) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.snapshots[s.Key().ID()] = *s
	return nil
}

// ListSnapshots runs one page of q, in the same order as Firestore.
func (m *Memory) ListSnapshots(_ context.Context, q Query) (Page, error) {
	if _, err := q.Shape(); err != nil {
		return Page{}, err
	}
	field, _, err := q.rangeField()
	if err != nil {
		return Page{}, err
	}
	limit := q.Limit
	if limit <= 0 || limit > 1000 {
		limit = 500
	}
	var after *cursor
	if q.After != "" {
		c, err := decodeCursor(q.After)
		if err != nil {
			return Page{}, err
		}
		after = &c
	}
	m.mu.Lock()
	type row struct {
		id string
		s  Snapshot
	}
	var rows []row
	for id, s := range m.snapshots {
		if q.matches(&s) {
			rows = append(rows, row{id, s})
		}
	}
	m.mu.Unlock()
	sort.Slice(rows, func(i, j int) bool {
		if c := orderValue(field, &rows[i].s).Compare(orderValue(field, &rows[j].s)); c != 0 {
			return c < 0
		}
		return rows[i].id < rows[j].id
	})
	if after != nil {
		i := sort.Search(len(rows), func(i int) bool {
			if c := orderValue(field, &rows[i].s).Compare(after.T); c != 0 {
				return c > 0
			}
			return rows[i].id > after.ID
		})
		rows = rows[i:]
	}
	page := Page{}
	for _, r := range rows {
		if len(page.Snapshots) == limit {
			break
		}
		page.Snapshots = append(page.Snapshots, r.s)
	}
	page.Reads = max(len(page.Snapshots), 1)
	if len(page.Snapshots) == limit {
		last := page.Snapshots[limit-1]
		page.Next = encodeCursor(cursor{T: orderValue(field, &last), ID: last.DocID()})
	}
	return page, nil
}

// CountSnapshots counts the records q selects.
func (m *Memory) CountSnapshots(_ context.Context, q Query) (int64, error) {
	if _, err := q.Shape(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, s := range m.snapshots {
		if q.matches(&s) {
			n++
		}
	}
	return n, nil
}

// CountByState counts snapshots in every state.
func (m *Memory) CountByState(context.Context) (map[State]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[State]int64)
	for _, s := range States() {
		out[s] = 0
	}
	for _, s := range m.snapshots {
		out[s.State]++
	}
	return out, nil
}

// GetTask returns the task record, or ErrNotFound.
func (m *Memory) GetTask(_ context.Context, key TaskKey) (*Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.tasks[key.ID()]
	if !ok {
		return nil, fmt.Errorf("get task: %w", ErrNotFound)
	}
	return &t, nil
}

// UpdateTask runs fn under the store's lock.
func (m *Memory) UpdateTask(_ context.Context, key TaskKey, fn TaskFunc) (*Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out, err := updateMap(m.tasks, key.ID(), func(cur *Task) (*Task, error) {
		next, err := fn(cur)
		if next != nil {
			next.SessionID, next.TaskID = key.SessionID, key.TaskID
		}
		return next, err
	})
	if err != nil {
		return nil, fmt.Errorf("update task: %w", err)
	}
	return out, nil
}

// ApplyTaskEvent is UpdateTask for an event not applied before: if the
// event's marker exists it writes nothing and returns *ProcessedError.
func (m *Memory) ApplyTaskEvent(ctx context.Context, key TaskKey, eventID string, fn TaskFunc) (*Task, error) {
	m.mu.Lock()
	h, ok := m.processed[eventID]
	m.mu.Unlock()
	if ok {
		return nil, &ProcessedError{EventID: eventID, Hash: h}
	}
	return m.UpdateTask(ctx, key, fn)
}

// ListTasks returns the tasks of a session in a state.
func (m *Memory) ListTasks(_ context.Context, sessionID string, state TaskState) ([]Task, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Task
	for _, t := range m.tasks {
		if t.SessionID == sessionID && t.State == state {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b Task) int { return cmp.Compare(a.Key().ID(), b.Key().ID()) })
	return out, nil
}

// GetSession returns the session record, or ErrNotFound.
func (m *Memory) GetSession(_ context.Context, id string) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, ok := m.sessions[id]
	if !ok {
		return nil, fmt.Errorf("get session: %w", ErrNotFound)
	}
	return &s, nil
}

// UpdateSession runs fn under the store's lock.
func (m *Memory) UpdateSession(_ context.Context, id string, fn SessionFunc) (*Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out, err := updateMap(m.sessions, id, func(cur *Session) (*Session, error) {
		next, err := fn(cur)
		if next != nil {
			next.SessionID = id
		}
		return next, err
	})
	if err != nil {
		return nil, fmt.Errorf("update session: %w", err)
	}
	return out, nil
}

// updateMap is Memory's transaction on one record: fn sees a copy of the
// current record (nil when absent); what it returns is stored unless nil.
// The caller holds the lock.
func updateMap[T any](records map[string]T, id string, fn func(cur *T) (*T, error)) (*T, error) {
	var cur *T
	if r, ok := records[id]; ok {
		cur = &r
	}
	next, err := fn(cur)
	if err != nil {
		return nil, err
	}
	if next == nil {
		return cur, nil
	}
	records[id] = *next
	out := *next
	return &out, nil
}

// CreateSession stores a session record if none exists.
func (m *Memory) CreateSession(_ context.Context, s *Session) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.sessions[s.SessionID]; ok {
		return false, nil
	}
	m.sessions[s.SessionID] = *s
	return true, nil
}

// ListSessions returns the most recently started sessions.
func (m *Memory) ListSessions(_ context.Context, limit int) ([]Session, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return newestFirst(m.sessions, limit, func(s Session) time.Time { return s.StartedAt }), nil
}

// ListSessionsByOutcome returns up to limit sessions with that outcome.
func (m *Memory) ListSessionsByOutcome(_ context.Context, outcome Outcome, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = 100
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Session
	for _, s := range m.sessions {
		if s.Outcome == outcome && len(out) < limit {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Session) int { return cmp.Compare(a.SessionID, b.SessionID) })
	return out, nil
}

// ListSessionsJudgedSince returns up to limit sessions whose verdict was
// written at or after since, the most recent first.
func (m *Memory) ListSessionsJudgedSince(_ context.Context, since time.Time, limit int) ([]Session, error) {
	if limit <= 0 {
		limit = 100
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Session
	for _, s := range m.sessions {
		if !s.OutcomeAt.IsZero() && !s.OutcomeAt.Before(since) {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b Session) int { return b.OutcomeAt.Compare(a.OutcomeAt) })
	return out[:min(len(out), limit)], nil
}

// AddRejected records a rejected message; the first record of an id stays.
func (m *Memory) AddRejected(_ context.Context, r Rejected) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.rejected[r.ID]; !ok {
		m.rejected[r.ID] = r
	}
	return nil
}

// ListRejected returns the most recent rejected messages.
func (m *Memory) ListRejected(_ context.Context, limit int) ([]Rejected, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return newestFirst(m.rejected, limit, func(r Rejected) time.Time { return r.ReceivedAt }), nil
}

// MarkProcessed records that an event with this content hash was applied.
func (m *Memory) MarkProcessed(_ context.Context, eventID, hash string, _, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.processed[eventID] = hash
	return nil
}

// Processed reports whether an event was applied before, and the content
// hash it was applied with.
func (m *Memory) Processed(_ context.Context, eventID string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	h, ok := m.processed[eventID]
	return h, ok, nil
}

// AcquireLease takes the named lease if free, expired or already holder's.
func (m *Memory) AcquireLease(_ context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && l.Holder != holder && l.Until.After(now) {
		return false, nil
	}
	m.leases[name] = lease{Holder: holder, Until: now.Add(ttl)}
	return true, nil
}

// ReleaseLease frees the named lease if holder has it.
func (m *Memory) ReleaseLease(_ context.Context, name, holder string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.leases[name]; ok && l.Holder == holder {
		delete(m.leases, name)
	}
	return nil
}

// SaveHealth stores a health report.
func (m *Memory) SaveHealth(_ context.Context, h HealthRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.health[h.ID] = h
	return nil
}

// LatestHealth returns the n most recent health reports, newest first.
func (m *Memory) LatestHealth(_ context.Context, n int) ([]HealthRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return newestFirst(m.health, n, func(h HealthRecord) time.Time { return h.At }), nil
}

// newestFirst returns up to limit records (100 when limit <= 0), newest by
// at first: Memory's counterpart of an ordered, limited Firestore query.
// The caller holds the lock.
func newestFirst[T any](records map[string]T, limit int, at func(T) time.Time) []T {
	if limit <= 0 {
		limit = 100
	}
	out := make([]T, 0, len(records))
	for _, r := range records {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b T) int { return at(b).Compare(at(a)) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out
}
