package sweep

import (
	"context"
	"errors"
	"time"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/store"
)

// OrphanReader is what the orphan check reads from the registry.
type OrphanReader interface {
	GetSnapshot(ctx context.Context, key store.Key) (*store.Snapshot, error)
	GetSession(ctx context.Context, id string) (*store.Session, error)
}

// Labelled is what one labelled snapshot in Compute is to the registry,
// as the sweep decides it (and `snapsweep orphans` shows it).
type Labelled struct {
	// Record is the registry's record of the name; nil when it has none.
	Record *store.Snapshot
	// Registered: a live record holds this very snapshot. Closed: the
	// record of the name is closed and was this snapshot (Compute may
	// still be finishing a delete). Otherwise the snapshot is an orphan:
	// no record, or a record of another snapshot of the same name.
	Registered, Closed bool
	// Session is the label's value and KnownSession whether the registry
	// knows that session; Adoption what the sweep does with the orphan.
	Session      string
	KnownSession bool
	Adoption     lifecycle.Adoption
}

// Orphan reports whether the snapshot is an orphan.
func (l Labelled) Orphan() bool { return !l.Registered && !l.Closed }

// OrphanCheck is the one orphan decision: the sweep's scan and the
// operator's `snapsweep orphans` both ask it, so they never disagree. It
// remembers the sessions it looked up; Reads counts its registry reads.
type OrphanCheck struct {
	Store        OrphanReader
	Policy       lifecycle.Policy
	SessionLabel string
	Reads        int
	known        map[string]bool
}

// Check says what the labelled snapshot sn of project is to the registry.
func (c *OrphanCheck) Check(ctx context.Context, project string, sn gce.Snapshot, now time.Time) (Labelled, error) {
	cur, err := c.Store.GetSnapshot(ctx, store.Key{Project: project, Name: sn.Name})
	c.Reads++
	switch {
	case errors.Is(err, store.ErrNotFound):
		cur = nil
	case err != nil:
		return Labelled{}, err
	}
	l := Labelled{Record: cur, Session: sn.Labels[c.SessionLabel]}
	switch {
	case cur != nil && cur.State.Live() && (sn.ID == "" || cur.ComputeID == "" || cur.ComputeID == sn.ID):
		l.Registered = true
		return l, nil
	case cur != nil && !cur.State.Live() && (sn.ID == "" || cur.ComputeID == sn.ID):
		l.Closed = true
		return l, nil
	}
	if l.KnownSession, err = c.isKnown(ctx, l.Session); err != nil {
		return Labelled{}, err
	}
	l.Adoption = c.Policy.AdoptionFor(l.Session, l.KnownSession, sn.CreationTime, now)
	return l, nil
}

func (c *OrphanCheck) isKnown(ctx context.Context, id string) (bool, error) {
	if k, ok := c.known[id]; ok || !events.ValidSessionID(id) {
		return k, nil
	}
	_, err := c.Store.GetSession(ctx, id)
	c.Reads++
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return false, err
	}
	if c.known == nil {
		c.known = map[string]bool{}
	}
	c.known[id] = err == nil
	return err == nil, nil
}
