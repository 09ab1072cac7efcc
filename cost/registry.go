package cost

import (
	"context"
	"fmt"
	"time"

	"github.com/snapsweep/snapsweep/store"
)

// Lister is what a report needs from the registry.
type Lister interface {
	ListSnapshots(ctx context.Context, q store.Query) (store.Page, error)
}

// Filter selects the records a report covers.
type Filter struct {
	SessionID string
	Project   string
	// Since keeps snapshots registered at or after it (zero: all).
	Since time.Time
	// Max stops reading after this many records (0: no bound); Load then
	// reports that the figures are partial.
	Max int
}

// Load reads every record the filter selects (one Firestore read per
// record, and one per page at least), current and archived generations.
// partial is set when Max stopped it.
func Load(ctx context.Context, l Lister, f Filter) (recs []store.Snapshot, reads int, partial bool, err error) {
	q := store.Query{SessionID: f.SessionID, OrderByCreated: true, Limit: 500}
	for {
		page, err := l.ListSnapshots(ctx, q)
		if err != nil {
			return nil, reads, false, fmt.Errorf("list snapshots: %w", err)
		}
		reads += page.Reads
		for _, s := range page.Snapshots {
			if f.Project != "" && s.Project != f.Project {
				continue
			}
			if !f.Since.IsZero() && s.RegisteredAt.Before(f.Since) && s.CreatedAt.Before(f.Since) {
				continue
			}
			recs = append(recs, s)
		}
		if f.Max > 0 && len(recs) >= f.Max && page.Next != "" {
			return recs, reads, true, nil
		}
		if page.Next == "" {
			return recs, reads, false, nil
		}
		q.After = page.Next
	}
}
