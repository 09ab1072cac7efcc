package cost

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/snapsweep/snapsweep/cost/figures"
	"github.com/snapsweep/snapsweep/store"
)

// GiB is the unit Compute prices storage in ("GB" in its price list is
// 2^30 bytes).
const GiB = 1 << 30

// HoursPerMonth is the month Google's price list counts in.
const HoursPerMonth = 730

// The figures of the account are package figures' types (the /status wire
// and the job-side reporter carry them without the registry); cost
// computes them.
type (
	Reason       = figures.Reason
	Amount       = figures.Amount
	Retention    = figures.Retention
	Figures      = figures.Figures
	MissingPrice = figures.MissingPrice
)

// Reasons a snapshot is kept, in report order.
const (
	Retained = figures.Retained
	Running  = figures.Running
	Deleting = figures.Deleting
	Held     = figures.Held
	Refused  = figures.Refused
	Failed   = figures.Failed
)

// Reasons lists every reason in report order.
func Reasons() []Reason { return figures.Reasons() }

// ReasonOf is why a live record is kept ("" for a closed one).
func ReasonOf(st store.State) Reason {
	switch st {
	case store.Retained:
		return Retained
	case store.Active:
		return Running
	case store.CleanupPending, store.Deleting:
		return Deleting
	case store.Held:
		return Held
	case store.Refused:
		return Refused
	case store.Failed:
		return Failed
	}
	return ""
}

// Chain is an incremental chain (one source disk, or one chain name) with
// a deleted snapshot and a kept one, both registered: Compute moved the
// data the kept ones still need into them, so the chain's total before and
// after tells what the deletions really freed.
type Chain struct {
	Project string `json:"project"`
	Chain   string `json:"chain"`
	Deleted int    `json:"deleted"`
	Kept    int    `json:"kept"`
	// Before is the deleted snapshots' storage at their deletion plus the
	// kept ones' as read before the first deletion; After the kept ones'
	// as read after the last deletion. Nil when a kept snapshot was not
	// read at the right time (yet): the sweep reads it again.
	Before *int64 `json:"before,omitempty"`
	After  *int64 `json:"after,omitempty"`
	// Freed is Before - After.
	Freed *int64 `json:"freed,omitempty"`
}

// Report is the whole account.
type Report struct {
	At       time.Time           `json:"at"`
	Currency string              `json:"currency"`
	Prices   string              `json:"prices"`
	Overall  Figures             `json:"overall"`
	Projects map[string]*Figures `json:"projects"`
	Sessions map[string]*Figures `json:"sessions"`
	// Retained lists every retained snapshot with the cost of keeping it
	// until its retention ends, soonest end first.
	Retained []Retention    `json:"retained,omitempty"`
	Chains   []Chain        `json:"chains,omitempty"`
	Missing  []MissingPrice `json:"missingPrices,omitempty"`
	// Bounds says, in words, what the figures are and are not.
	Bounds []string `json:"bounds"`
}

// Bounds of every report, in words (docs/operations.md explains them).
var Bounds = []string{
	"deleted storage is up to the figure: it is Compute's storageBytes read right before each delete, and Compute moves data a later snapshot of the chain still needs into that snapshot, so less may be freed (see chains)",
	"a size still UPDATING when read is bounded by its source disk's size (notFinal); the sweep reads kept snapshots again until it is final",
	"monthly cost is storage at the price table's rate for 730 hours; snapshots without a price for their type and location are left out and listed (missingPrices)",
}

// Compute makes the report of records (current and archived generations,
// any states) at now with prices.
func Compute(records []store.Snapshot, prices Prices, now time.Time) *Report {
	cur := prices.Currency
	if cur == "" {
		cur = "USD"
	}
	r := &Report{At: now.UTC(), Currency: cur, Prices: prices.Source + "; taken " + prices.TakenOn,
		Overall: *figures.New(), Projects: map[string]*Figures{}, Sessions: map[string]*Figures{}, Bounds: Bounds}
	missing := map[string]*MissingPrice{}
	type member struct {
		rec     store.Snapshot
		deleted bool
	}
	chains := map[[2]string][]member{}
	for _, s := range records {
		scopes := []*Figures{&r.Overall, scope(r.Projects, s.Project), scope(r.Sessions, s.SessionID)}
		a, price, priced := measure(s.Size, prices)
		if s.Size != nil && !priced {
			w := Where(s.Size.Type, s.Size.Locations)
			m := missing[w]
			if m == nil {
				m = &MissingPrice{Where: w}
				missing[w] = m
			}
			m.Snapshots++
			m.Bytes += a.Bytes
		}
		switch {
		case s.State == store.Deleted && s.DeletedBy == "snapsweep":
			for _, f := range scopes {
				f.Deleted.Add(a)
			}
			if k, ok := chainKey(s); ok {
				chains[k] = append(chains[k], member{s, true})
			}
		case !s.State.Live():
			for _, f := range scopes {
				f.GoneOtherwise++
			}
		case s.Archived:
			// An older generation still live cannot be: closed by new-generation.
		default:
			why := ReasonOf(s.State)
			for _, f := range scopes {
				k := f.Kept[why]
				k.Add(a)
				f.Kept[why] = k
				f.KeptTotal.Add(a)
			}
			if k, ok := chainKey(s); ok {
				chains[k] = append(chains[k], member{s, false})
			}
			if why != Retained {
				continue
			}
			until := s.RetainUntil
			if s.ExpiresAt.After(until) {
				until = s.ExpiresAt
			}
			ret := Retention{Project: s.Project, Name: s.Name, SessionID: s.SessionID, Until: until.UTC(), Bytes: a.Bytes}
			if s.Size != nil && priced {
				c := float64(a.Bytes) / GiB * price * max(until.Sub(now).Hours(), 0) / HoursPerMonth
				ret.Cost = &c
				for _, f := range scopes {
					f.RetentionCost += c
				}
			}
			r.Retained = append(r.Retained, ret)
		}
	}
	sort.SliceStable(r.Retained, func(i, j int) bool {
		if !r.Retained[i].Until.Equal(r.Retained[j].Until) {
			return r.Retained[i].Until.Before(r.Retained[j].Until)
		}
		return r.Retained[i].Project+"/"+r.Retained[i].Name < r.Retained[j].Project+"/"+r.Retained[j].Name
	})
	for k, ms := range chains {
		c := Chain{Project: k[0], Chain: k[1]}
		var first, last time.Time
		var deleted int64
		for _, m := range ms {
			if !m.deleted {
				continue
			}
			c.Deleted++
			deleted += bytesOf(m.rec.Size)
			if first.IsZero() || m.rec.DeletedAt.Before(first) {
				first = m.rec.DeletedAt
			}
			if m.rec.DeletedAt.After(last) {
				last = m.rec.DeletedAt
			}
		}
		c.Kept = len(ms) - c.Deleted
		if c.Deleted == 0 || c.Kept == 0 {
			continue
		}
		before, after, okBefore, okAfter := deleted, int64(0), true, true
		for _, m := range ms {
			if m.deleted {
				continue
			}
			switch sz := m.rec.Size; {
			case sz != nil && !sz.ReadAt.After(first):
				before += bytesOf(sz)
			case m.rec.PrevSize != nil && !m.rec.PrevSize.ReadAt.After(first):
				before += bytesOf(m.rec.PrevSize)
			default:
				okBefore = false
			}
			if sz := m.rec.Size; sz.Final() && sz.ReadAt.After(last) {
				after += sz.StorageBytes
			} else {
				okAfter = false
			}
		}
		if okBefore {
			c.Before = &before
		}
		if okAfter {
			c.After = &after
		}
		if okBefore && okAfter {
			freed := before - after
			c.Freed = &freed
		}
		r.Chains = append(r.Chains, c)
	}
	sort.Slice(r.Chains, func(i, j int) bool {
		return r.Chains[i].Project+"\x00"+r.Chains[i].Chain < r.Chains[j].Project+"\x00"+r.Chains[j].Chain
	})
	for _, m := range missing {
		r.Missing = append(r.Missing, *m)
	}
	slices.SortFunc(r.Missing, func(a, b MissingPrice) int { return strings.Compare(a.Where, b.Where) })
	return r
}

func scope(m map[string]*Figures, k string) *Figures {
	f := m[k]
	if f == nil {
		f = figures.New()
		m[k] = f
	}
	return f
}

// bytesOf is a size's storage: Compute's figure when final, else bounded
// by the disk's size (a snapshot never stores more than its disk holds).
func bytesOf(z *store.Size) int64 {
	if z == nil {
		return 0
	}
	if z.Final() {
		return z.StorageBytes
	}
	return max(z.StorageBytes, z.DiskSizeGb*GiB)
}

// AmountOf is one snapshot's storage and monthly cost (nil: never read).
func AmountOf(z *store.Size, prices Prices) Amount {
	a, _, _ := measure(z, prices)
	return a
}

// Add adds b to a.

// measure is one snapshot's amount, its price and whether it has one.
func measure(z *store.Size, prices Prices) (Amount, float64, bool) {
	a := Amount{Snapshots: 1}
	if z == nil {
		a.Unmeasured = 1
		return a, 0, false
	}
	a.Bytes = bytesOf(z)
	if !z.Final() {
		a.NotFinal = 1
	}
	price, ok := prices.Price(z.Type, z.Locations)
	if !ok {
		a.Unpriced = 1
		return a, 0, false
	}
	a.MonthlyCost = float64(a.Bytes) / GiB * price
	return a, price, true
}

// chainKey is the incremental chain of a snapshot: its chain name, or its
// source disk (Compute chains a disk's snapshots in one location).
func chainKey(s store.Snapshot) ([2]string, bool) {
	switch {
	case s.Size != nil && s.Size.Chain != "":
		return [2]string{s.Project, "chain " + s.Size.Chain}, true
	case s.SourceDisk != "":
		return [2]string{s.Project, s.SourceDisk}, true
	}
	return [2]string{}, false
}

// Bytes renders a byte count in binary units.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, exp := float64(n), 0
	for v >= unit && exp < 5 {
		v /= unit
		exp++
	}
	return fmt.Sprintf("%.2f %ciB", v, "KMGTPE"[exp-1])
}

// Money renders an amount of currency to the cent.
func Money(v float64, currency string) string {
	v = math.Round(v*100) / 100
	if currency == "USD" || currency == "" {
		return fmt.Sprintf("$%.2f", v)
	}
	return fmt.Sprintf("%.2f %s", v, currency)
}

// Line is the one-line account of f ("the savings line").
func Line(f Figures, currency string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deleted %d snapshots holding up to %s (%s/month avoided); kept %d holding %s (%s/month)",
		f.Deleted.Snapshots, Bytes(f.Deleted.Bytes), Money(f.Deleted.MonthlyCost, currency),
		f.KeptTotal.Snapshots, Bytes(f.KeptTotal.Bytes), Money(f.KeptTotal.MonthlyCost, currency))
	if k := f.Kept[Retained]; k.Snapshots > 0 {
		fmt.Fprintf(&b, ", of which %d retained after a failure (%s until their retention ends)", k.Snapshots, Money(f.RetentionCost, currency))
	}
	if n := f.Deleted.Unpriced + f.KeptTotal.Unpriced; n > 0 {
		fmt.Fprintf(&b, "; %d without a price", n)
	}
	if n := f.Deleted.Unmeasured + f.KeptTotal.Unmeasured; n > 0 {
		fmt.Fprintf(&b, "; %d never measured", n)
	}
	if n := f.Deleted.NotFinal + f.KeptTotal.NotFinal; n > 0 {
		fmt.Fprintf(&b, "; %d sizes not final (bounded by disk size)", n)
	}
	return b.String()
}
