// Package figures is the vocabulary of snapsweep's cost account: storage
// and its monthly cost (Amount), by reason a snapshot is kept, for one
// scope (Figures), retained snapshots and what keeping them costs, and
// prices the table lacks.
//
// It holds types only and imports nothing of snapsweep, so that the
// /status wire types (package status) and the job-side reporter can carry
// the figures without the registry. Package cost computes them; nothing
// here decides anything.
package figures

import "time"

// Reason is why a snapshot is still kept.
type Reason string

// Reasons a snapshot is kept, in report order.
const (
	Retained Reason = "retained" // its task failed: kept until its retention ends
	Running  Reason = "running"  // its task has not finished (or an adopted orphan not expired)
	Deleting Reason = "deleting" // a cleanup is under way
	Held     Reason = "held"     // an operator holds it
	Refused  Reason = "refused"  // the ownership check failed: never deleted by snapsweep
	Failed   Reason = "failed"   // a delete failed permanently: an operator must look
)

// Reasons lists every reason in report order.
func Reasons() []Reason { return []Reason{Retained, Running, Deleting, Held, Refused, Failed} }

// Amount is storage and its monthly cost.
type Amount struct {
	Snapshots int `json:"snapshots"`
	// Bytes is Compute's storageBytes summed; for a size still UPDATING
	// the source disk's size bounds it (see NotFinal). For deleted
	// snapshots it is an upper bound of what was freed.
	Bytes int64 `json:"bytes"`
	// MonthlyCost is the cost of Bytes per month, over the snapshots that
	// have a price (Unpriced counts the others).
	MonthlyCost float64 `json:"monthlyCost"`
	// Unmeasured counts snapshots whose size snapsweep never read (not in
	// Bytes); NotFinal those whose size was still UPDATING when read;
	// Unpriced those with no price for their type and location.
	Unmeasured int `json:"unmeasured,omitempty"`
	NotFinal   int `json:"notFinal,omitempty"`
	Unpriced   int `json:"unpriced,omitempty"`
}

// Add adds b to a.
func (a *Amount) Add(b Amount) {
	a.Snapshots += b.Snapshots
	a.Bytes += b.Bytes
	a.MonthlyCost += b.MonthlyCost
	a.Unmeasured += b.Unmeasured
	a.NotFinal += b.NotFinal
	a.Unpriced += b.Unpriced
}

// Retention is one retained snapshot and what keeping it until its
// retention ends costs.
type Retention struct {
	Project   string    `json:"project"`
	Name      string    `json:"name"`
	SessionID string    `json:"sessionId"`
	Until     time.Time `json:"until"`
	Bytes     int64     `json:"bytes"`
	// Cost is Bytes at its price from now until Until (nil: no size or no
	// price).
	Cost *float64 `json:"cost,omitempty"`
}

// Figures are the figures of one scope (a session, a project, or all).
type Figures struct {
	// Deleted is what snapsweep deleted: Bytes is the storage those
	// snapshots held when read right before their delete, an upper bound
	// of what was freed; MonthlyCost the monthly cost that avoids.
	Deleted Amount `json:"deleted"`
	// Kept is what is still kept, by reason; KeptTotal sums it.
	Kept      map[Reason]Amount `json:"kept"`
	KeptTotal Amount            `json:"keptTotal"`
	// RetentionCost is the cost of keeping every retained snapshot until
	// its retention ends (over those with a size and a price).
	RetentionCost float64 `json:"retentionCost"`
	// GoneOtherwise counts snapshots closed without snapsweep deleting
	// them (the job deleted them, or they vanished): no saving claimed.
	GoneOtherwise int `json:"goneOtherwise,omitempty"`
}

// New is empty figures.
func New() *Figures { return &Figures{Kept: map[Reason]Amount{}} }

// MissingPrice is a type and location snapshots are stored in that the
// price table has no price for: their cost is left out, not guessed.
type MissingPrice struct {
	Where     string `json:"where"`
	Snapshots int    `json:"snapshots"`
	Bytes     int64  `json:"bytes"`
}
