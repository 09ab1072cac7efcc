package store

// Collection names of the registry. Terraform declares indexes and TTL
// policies against these names; a test keeps the two in step.
const (
	CollectionSnapshots = "snapshots"
	CollectionTasks     = "tasks"
	CollectionSessions  = "sessions"
	CollectionRejected  = "rejected"
	CollectionProcessed = "processed_events"
	CollectionLeases    = "leases"
	CollectionHealth    = "health_reports"
)

// TTLField is the timestamp field that Firestore TTL policies use on the
// collections kept only for audit (rejected events, processed-event
// markers, health history).
const TTLField = "expireAt"

// TTLCollections are the collections whose documents carry TTLField.
var TTLCollections = []string{CollectionRejected, CollectionProcessed, CollectionHealth}

// IndexField is one field of a query shape, in index order.
type IndexField struct {
	Path  string
	Order string // "ASCENDING" or "DESCENDING"
}

// QueryShape is the set of fields one query filters and orders on. Every
// query the Firestore store runs has one of these shapes (it refuses any
// other), and Terraform must declare a composite index for each shape of
// more than one field: the emulator does not enforce indexes, production does.
type QueryShape struct {
	Name       string
	Collection string
	// Fields lists equality fields first (in any order), then the one
	// range or order-by field last.
	Fields []IndexField
}

func asc(path string) IndexField  { return IndexField{Path: path, Order: "ASCENDING"} }
func desc(path string) IndexField { return IndexField{Path: path, Order: "DESCENDING"} }

// QueryShapes returns every query shape the store runs.
func QueryShapes() []QueryShape {
	return []QueryShape{
		{Name: "snapshots-by-created", Collection: CollectionSnapshots, Fields: []IndexField{asc("createdAt")}},
		{Name: "snapshots-by-state", Collection: CollectionSnapshots, Fields: []IndexField{asc("state")}},
		{Name: "task-snapshots-by-state", Collection: CollectionSnapshots, Fields: []IndexField{asc("sessionId"), asc("taskId"), asc("state")}},
		{Name: "session-snapshots-by-state", Collection: CollectionSnapshots, Fields: []IndexField{asc("sessionId"), asc("state")}},
		{Name: "snapshots-by-state-expiry", Collection: CollectionSnapshots, Fields: []IndexField{asc("state"), asc("expiresAt")}},
		{Name: "snapshots-by-state-updated", Collection: CollectionSnapshots, Fields: []IndexField{asc("state"), asc("updatedAt")}},
		{Name: "snapshots-by-state-created", Collection: CollectionSnapshots, Fields: []IndexField{asc("state"), asc("createdAt")}},
		{Name: "session-snapshots-by-created", Collection: CollectionSnapshots, Fields: []IndexField{asc("sessionId"), asc("createdAt")}},
		{Name: "task-snapshots-by-created", Collection: CollectionSnapshots, Fields: []IndexField{asc("sessionId"), asc("taskId"), asc("createdAt")}},
		{Name: "session-tasks-by-state", Collection: CollectionTasks, Fields: []IndexField{asc("sessionId"), asc("state")}},
		{Name: "rejected-by-time", Collection: CollectionRejected, Fields: []IndexField{desc("receivedAt")}},
		{Name: "health-by-time", Collection: CollectionHealth, Fields: []IndexField{desc("at")}},
		{Name: "sessions-by-started", Collection: CollectionSessions, Fields: []IndexField{desc("startedAt")}},
		{Name: "sessions-by-outcome", Collection: CollectionSessions, Fields: []IndexField{asc("outcome")}},
		{Name: "sessions-by-judged", Collection: CollectionSessions, Fields: []IndexField{desc("outcomeAt")}},
	}
}
