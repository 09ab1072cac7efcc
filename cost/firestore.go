package cost

// FirestorePrices are Firestore's list prices per operation, per 100,000
// documents read, written and deleted (TTL deletions included).
type FirestorePrices struct {
	Source, TakenOn, Currency                string
	ReadPer100k, WritePer100k, DeletePer100k float64
}

// DefaultFirestorePrices are the Standard edition's list prices in
// us-central1, as the Firestore documentation showed them when read on
// 2026-12-02 (a stored copy of firebase.google.com/docs/firestore/standard-edition:
// reads $0.03, writes $0.09, deletes $0.01 per 100,000 documents). Other
// locations and multi-region databases cost more: check the pricing page.
func DefaultFirestorePrices() FirestorePrices {
	return FirestorePrices{
		Source:      "https://firebase.google.com/docs/firestore/standard-edition (Standard edition, us-central1); https://cloud.google.com/firestore/pricing",
		TakenOn:     "2026-12-02",
		Currency:    "USD",
		ReadPer100k: 0.03, WritePer100k: 0.09, DeletePer100k: 0.01,
	}
}

// Ops counts Firestore operations: documents read (a query that returns
// nothing still bills one, an aggregation one per 1,000 index entries),
// documents written, documents deleted.
type Ops struct {
	Reads, Writes, Deletes float64
}

// Add returns the sum of o and b.
func (o Ops) Add(b Ops) Ops {
	return Ops{o.Reads + b.Reads, o.Writes + b.Writes, o.Deletes + b.Deletes}
}

// Times returns o scaled by n.
func (o Ops) Times(n float64) Ops { return Ops{o.Reads * n, o.Writes * n, o.Deletes * n} }

// Cost is what the operations cost at these prices.
func (p FirestorePrices) Cost(o Ops) float64 {
	return (o.Reads*p.ReadPer100k + o.Writes*p.WritePer100k + o.Deletes*p.DeletePer100k) / 100_000
}

// FirestoreBill is the registry's bill for snapshots snapshots whose lives
// (report to confirmed deletion) cost life each, plus the sweeps that ran
// meanwhile at perSweep each: the formula of docs/operations.md, "What the
// registry costs".
func FirestoreBill(p FirestorePrices, life Ops, snapshots int, perSweep Ops, sweeps int) float64 {
	return p.Cost(life.Times(float64(snapshots)).Add(perSweep.Times(float64(sweeps))))
}
