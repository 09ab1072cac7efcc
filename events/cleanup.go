package events

import (
	"encoding/json"
	"fmt"
	"time"
)

// CleanupReason says why snapsweep asked for a snapshot to be deleted.
type CleanupReason string

// The reasons a cleanup message may give.
const (
	// ReasonTaskCompleted: the snapshot's task succeeded.
	ReasonTaskCompleted CleanupReason = "task-completed"
	// ReasonSessionCompleted: session-level cleanup after session.completed.
	ReasonSessionCompleted CleanupReason = "session-completed"
	// ReasonExpired: the snapshot outlived its TTL or retention.
	ReasonExpired CleanupReason = "expired"
	// ReasonThreshold: emergency cleanup above SNAPSWEEP_MAX_LIVE_SNAPSHOTS.
	ReasonThreshold CleanupReason = "threshold"
	// ReasonOrphan: a labelled snapshot that no registered task accounts for.
	ReasonOrphan CleanupReason = "orphan"
	// ReasonManual: an operator asked for it.
	ReasonManual CleanupReason = "manual"
)

// CleanupReasons returns every cleanup reason, in a fixed order. The slice
// is new on every call.
func CleanupReasons() []CleanupReason {
	return []CleanupReason{
		ReasonTaskCompleted, ReasonSessionCompleted, ReasonExpired,
		ReasonThreshold, ReasonOrphan, ReasonManual,
	}
}

// Valid reports whether r is one of the known cleanup reasons.
func (r CleanupReason) Valid() bool {
	switch r {
	case ReasonTaskCompleted, ReasonSessionCompleted, ReasonExpired, ReasonThreshold, ReasonOrphan, ReasonManual:
		return true
	}
	return false
}

// taskOptional reports whether a message of reason r may lack a task id:
// an orphan belongs to no known task, and an operator may name only the
// snapshot.
func (r CleanupReason) taskOptional() bool {
	return r == ReasonOrphan || r == ReasonManual
}

// CleanupMessage asks for one snapshot to be deleted (topic
// snapshot-cleanup). The deleter still checks ownership before it deletes.
type CleanupMessage struct {
	// Project holds the snapshot.
	Project string `json:"project"`
	// Name is the GCE snapshot name.
	Name string `json:"name"`
	// SessionID is the session the snapshot was registered under; the
	// snapshot's session label must equal it for the delete to happen.
	SessionID string `json:"sessionId"`
	// TaskID is the task the snapshot belongs to; empty only for reasons
	// orphan and manual.
	TaskID string `json:"taskId"`
	// Reason says why the snapshot is to be deleted.
	Reason CleanupReason `json:"reason"`
	// RequestedAt is when the cleanup was decided.
	RequestedAt time.Time `json:"requestedAt"`
	// DryRun asks for every step except the delete call.
	DryRun bool `json:"dryRun,omitempty"`
}

// Validate checks m and returns a *RejectError naming the first field in
// error, or nil.
func (m CleanupMessage) Validate() error {
	if err := checkProject("project", m.Project); err != nil {
		return err
	}
	if err := checkSnapshotName("name", m.Name); err != nil {
		return err
	}
	if err := checkSessionID("sessionId", m.SessionID); err != nil {
		return err
	}
	switch {
	case m.Reason == "":
		return missing("reason")
	case !m.Reason.Valid():
		return invalid("reason", fmt.Sprintf("unknown cleanup reason %s", quote(string(m.Reason))))
	}
	if m.TaskID != "" || !m.Reason.taskOptional() {
		if err := checkPrintable("taskId", m.TaskID, MaxIDLen); err != nil {
			return err
		}
	}
	return checkTime("requestedAt", m.RequestedAt)
}

var cleanupKeys = []string{"project", "name", "sessionId", "taskId", "reason", "requestedAt", "dryRun"}

// DecodeCleanup parses and validates one cleanup message, with the same
// rules for JSON as Decode. Every failure is a *RejectError; on failure the
// returned message holds the fields that could be read.
func DecodeCleanup(data []byte) (CleanupMessage, error) {
	var m CleanupMessage
	fields, err := members(data, cleanupKeys)
	if err != nil {
		return m, err
	}
	var errs firstError
	m.Project = errs.str(fields, "project", "project")
	m.Name = errs.str(fields, "name", "name")
	m.SessionID = errs.str(fields, "sessionId", "sessionId")
	m.TaskID = errs.str(fields, "taskId", "taskId")
	m.Reason = CleanupReason(errs.str(fields, "reason", "reason"))
	m.RequestedAt = errs.time(fields, "requestedAt", "requestedAt")
	m.DryRun = errs.bool(fields, "dryRun", "dryRun")
	if errs.err != nil {
		return m, errs.err
	}
	return m, m.Validate()
}

// Encode validates m and returns it as the JSON data of a Pub/Sub message,
// so that snapsweep never publishes a message it would itself refuse.
func (m CleanupMessage) Encode() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode cleanup message: %w", err)
	}
	return json.Marshal(m)
}
