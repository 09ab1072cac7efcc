// Package events defines the messages snapsweep exchanges over Pub/Sub: the
// migration events that jobs publish (topic migration-events) and the cleanup
// messages snapsweep publishes to itself (topic snapshot-cleanup). It decodes
// and validates them, and reports every message that can never be processed
// as a *RejectError whose Reason says why, so that the caller can acknowledge,
// record and count it instead of letting Pub/Sub retry it forever.
//
// The JSON Schemas in schema/ describe the same rules for producers; a test
// keeps them and the Go code in agreement.
//
// It knows messages, not state: it must not read the registry or decide
// what an event does to a record (ingest and lifecycle do).
package events

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Type is the type of a migration event.
type Type string

// The event types a migration job may publish. See the contract for what
// each one makes snapsweep do.
const (
	SessionStarted   Type = "session.started"
	SessionCompleted Type = "session.completed"
	TaskStarted      Type = "task.started"
	TaskCompleted    Type = "task.completed"
	TaskFailed       Type = "task.failed"
	SnapshotCreated  Type = "snapshot.created"
	SnapshotDeleted  Type = "snapshot.deleted"
)

// Types returns every known event type, in a fixed order. The slice is new
// on every call.
func Types() []Type {
	return []Type{
		SessionStarted, SessionCompleted,
		TaskStarted, TaskCompleted, TaskFailed,
		SnapshotCreated, SnapshotDeleted,
	}
}

// Valid reports whether t is one of the known event types.
func (t Type) Valid() bool {
	switch t {
	case SessionStarted, SessionCompleted, TaskStarted, TaskCompleted, TaskFailed, SnapshotCreated, SnapshotDeleted:
		return true
	}
	return false
}

// needsTask reports whether events of type t must name a task.
func (t Type) needsTask() bool {
	switch t {
	case TaskStarted, TaskCompleted, TaskFailed, SnapshotCreated, SnapshotDeleted:
		return true
	}
	return false
}

// needsSnapshot reports whether events of type t must carry a snapshot.
func (t Type) needsSnapshot() bool {
	return t == SnapshotCreated || t == SnapshotDeleted
}

// Limits of the fields whose format is otherwise free. Lengths count Unicode
// code points (as JSON Schema's maxLength does), not bytes.
const (
	// MaxEventBytes is the largest message Decode and DecodeCleanup accept.
	MaxEventBytes = 1 << 20
	// MaxIDLen is the longest event id and task id.
	MaxIDLen = 256
	// MaxSourceDiskLen is the longest snapshot.sourceDisk.
	MaxSourceDiskLen = 1024
	// MaxErrorLen is the longest error text of an event (64 Ki characters).
	// Longer texts are refused, not truncated: a job that sends them has a bug
	// worth seeing.
	MaxErrorLen = 64 << 10
	// MaxRetention is the longest snapshot.retention accepted (ten years);
	// anything longer is almost certainly a unit mistake.
	MaxRetention = 10 * 365 * 24 * time.Hour
	// maxProjectIDLen bounds the legacy domain-scoped form: a 253-character
	// domain, a colon and a 30-character project id.
	maxProjectIDLen = 253 + 1 + 30
)

// SnapshotRef names the Compute Engine snapshot a snapshot.* event is about.
type SnapshotRef struct {
	// Project is the GCP project id that holds the snapshot.
	Project string `json:"project"`
	// Name is the GCE snapshot name.
	Name string `json:"name"`
	// SourceDisk is the disk the snapshot was taken from (informational).
	SourceDisk string `json:"sourceDisk,omitempty"`
	// Retention, a Go duration such as "72h", overrides the default TTL of
	// this snapshot when set.
	Retention string `json:"retention,omitempty"`
	// ID is Compute Engine's numeric id of the snapshot (the insert
	// operation's targetId) in canonical decimal, such as
	// "4862391045337619302", or empty when the job does not send it. A name
	// can be reused once a snapshot is deleted; the id cannot, so when it is
	// set only the snapshot with this id may ever be deleted under this
	// record. Decode accepts it as a JSON string or number; it is encoded as
	// a string, as Compute's REST API renders it, because many JSON
	// libraries round integers above 2^53.
	ID string `json:"id,omitempty"`
}

// Event is one migration event as published on topic migration-events.
type Event struct {
	// ID identifies the event: the same id delivered twice is the same event.
	ID string `json:"id"`
	// Type says what happened.
	Type Type `json:"type"`
	// Time is when it happened at the source.
	Time time.Time `json:"time"`
	// SessionID names the migration session; it is also a GCE label value.
	SessionID string `json:"sessionId"`
	// TaskID names the task (one VM) within the session; required for
	// task.* and snapshot.* events.
	TaskID string `json:"taskId,omitempty"`
	// Snapshot is the snapshot a snapshot.* event is about.
	Snapshot *SnapshotRef `json:"snapshot,omitempty"`
	// Error is why a task failed (task.failed).
	Error string `json:"error,omitempty"`
}

// Validate checks e against every rule of the contract except those that
// need configuration or state: the project allowlist (see Allowlist), the
// clock skew (ReasonFutureTime) and ids already used (ReasonConflictingDuplicate).
// It returns a *RejectError naming the first field in error, or nil.
func (e Event) Validate() error {
	if err := checkPrintable("id", e.ID, MaxIDLen); err != nil {
		return err
	}
	switch {
	case e.Type == "":
		return missing("type")
	case !e.Type.Valid():
		return &RejectError{Reason: ReasonUnknownType, Field: "type", Detail: fmt.Sprintf("unknown event type %s", quote(string(e.Type)))}
	}
	if err := checkTime("time", e.Time); err != nil {
		return err
	}
	if err := checkSessionID("sessionId", e.SessionID); err != nil {
		return err
	}
	if e.TaskID != "" || e.Type.needsTask() {
		if err := checkPrintable("taskId", e.TaskID, MaxIDLen); err != nil {
			return err
		}
	}
	if e.Snapshot == nil {
		if e.Type.needsSnapshot() {
			return missing("snapshot")
		}
	} else if err := e.Snapshot.validate(); err != nil {
		return err
	}
	if err := checkText("error", e.Error, MaxErrorLen); err != nil {
		return err
	}
	return nil
}

// validate checks a snapshot reference, wherever it appears.
func (s *SnapshotRef) validate() error {
	if err := checkProject("snapshot.project", s.Project); err != nil {
		return err
	}
	if err := checkSnapshotName("snapshot.name", s.Name); err != nil {
		return err
	}
	if err := checkText("snapshot.sourceDisk", s.SourceDisk, MaxSourceDiskLen); err != nil {
		return err
	}
	if s.Retention != "" {
		if _, err := parseRetention(s.Retention); err != nil {
			return invalid("snapshot.retention", err.Error())
		}
	}
	if s.ID != "" && !ValidSnapshotID(s.ID) {
		return invalidSnapshotID("snapshot.id", quote(s.ID))
	}
	return nil
}

// invalidSnapshotID rejects a snapshot id; sent is what the message held,
// already quoted or described for the detail.
func invalidSnapshotID(field, sent string) error {
	return invalid(field, "must be Compute's numeric snapshot id, a decimal integer from 1 to 18446744073709551615 without leading zeros (as a JSON string or number), not "+sent)
}

func parseRetention(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New(`must be a Go duration such as "72h"`)
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	if d > MaxRetention {
		return 0, fmt.Errorf("must be at most %s (10 years)", MaxRetention)
	}
	return d, nil
}

// The identifier formats of the contract. The JSON Schemas use the same
// expressions.
const (
	sessionIDPattern    = `^[a-z0-9][a-z0-9_-]{0,62}$`
	snapshotNamePattern = `^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`
	// A project id, optionally scoped by a domain as in the legacy
	// "example.com:my-project".
	projectIDPattern = `^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`
	// A Compute resource id: a uint64 other than 0, in decimal without
	// leading zeros. The alternatives after the first spell out "at most
	// 18446744073709551615" for 20-digit numbers, digit by digit, so that a
	// JSON Schema validator can check the range of the string form too.
	snapshotIDPattern = `^(?:[1-9][0-9]{0,18}|1[0-7][0-9]{18}|18[0-3][0-9]{17}|184[0-3][0-9]{16}|1844[0-5][0-9]{15}|18446[0-6][0-9]{14}|184467[0-3][0-9]{13}|1844674[0-3][0-9]{12}|184467440[0-6][0-9]{10}|1844674407[0-2][0-9]{9}|18446744073[0-6][0-9]{8}|1844674407370[0-8][0-9]{6}|18446744073709[0-4][0-9]{5}|184467440737095[0-4][0-9]{4}|18446744073709550[0-9]{3}|18446744073709551[0-5][0-9]{2}|1844674407370955160[0-9]|1844674407370955161[0-5])$`
)

var (
	sessionIDRE    = regexp.MustCompile(sessionIDPattern)
	snapshotNameRE = regexp.MustCompile(snapshotNamePattern)
	projectIDRE    = regexp.MustCompile(projectIDPattern)
	snapshotIDRE   = regexp.MustCompile(snapshotIDPattern)
)

// ValidSessionID reports whether s is a valid session id: it must also be
// usable as a GCE label value.
func ValidSessionID(s string) bool { return len(s) <= 63 && sessionIDRE.MatchString(s) }

// ValidSnapshotName reports whether s is a valid GCE snapshot name.
func ValidSnapshotName(s string) bool { return len(s) <= 63 && snapshotNameRE.MatchString(s) }

// ValidSnapshotID reports whether s is a valid snapshot.id: a Compute
// resource id (a uint64 other than 0) in canonical decimal, with no sign,
// leading zeros, spaces or exponent. strconv.ParseUint(s, 10, 64) succeeds
// on every valid id.
func ValidSnapshotID(s string) bool { return len(s) <= 20 && snapshotIDRE.MatchString(s) }

// ValidTaskID reports whether s is a valid task id: 1 to 256 printable
// characters of valid UTF-8.
func ValidTaskID(s string) bool { return printable(s, MaxIDLen) }

// ValidProjectID reports whether s is a valid GCP project id, including the
// legacy domain-scoped form "example.com:my-project".
func ValidProjectID(s string) bool {
	return len(s) <= maxProjectIDLen && projectIDRE.MatchString(s)
}

// printable reports whether s is 1 to max printable characters (in the
// sense of unicode.IsPrint) of valid UTF-8.
func printable(s string, max int) bool {
	if s == "" || !utf8.ValidString(s) {
		return false
	}
	n := 0
	for _, r := range s {
		n++
		if n > max || !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

func checkPrintable(field, s string, max int) error {
	switch {
	case s == "":
		return missing(field)
	case !utf8.ValidString(s):
		return invalid(field, "must be valid UTF-8")
	case utf8.RuneCountInString(s) > max:
		return invalid(field, fmt.Sprintf("must be at most %d characters", max))
	case !printable(s, max):
		return invalid(field, "must contain printable characters only")
	}
	return nil
}

// checkText checks an optional free-text field.
func checkText(field, s string, max int) error {
	switch {
	case !utf8.ValidString(s):
		return invalid(field, "must be valid UTF-8")
	case len(s) > max && utf8.RuneCountInString(s) > max:
		return invalid(field, fmt.Sprintf("must be at most %d characters", max))
	}
	return nil
}

func checkTime(field string, t time.Time) error {
	if t.IsZero() {
		return missing(field)
	}
	// Years outside 0000–9999 cannot be written as RFC 3339.
	if y := t.Year(); y < 0 || y > 9999 {
		return invalid(field, "year must be between 0000 and 9999")
	}
	return nil
}

func checkProject(field, s string) error {
	switch {
	case s == "":
		return missing(field)
	case !ValidProjectID(s):
		return invalid(field, "must be a GCP project id (6–30 of a-z, 0-9 and -, starting with a letter), optionally domain-scoped as example.com:my-project")
	}
	return nil
}

func checkSnapshotName(field, s string) error {
	switch {
	case s == "":
		return missing(field)
	case !ValidSnapshotName(s):
		return invalid(field, "must match "+snapshotNamePattern)
	}
	return nil
}

func checkSessionID(field, s string) error {
	switch {
	case s == "":
		return missing(field)
	case !ValidSessionID(s):
		return invalid(field, "must match "+sessionIDPattern)
	}
	return nil
}

// Reason classifies why a message was rejected. It is meant for metrics
// labels and for the record an operator lists, so its values are stable.
type Reason string

// The reasons a message can be rejected for.
const (
	// ReasonBadJSON: the data is not a UTF-8 JSON object.
	ReasonBadJSON Reason = "bad_json"
	// ReasonUnknownType: the event type is not one of Types().
	ReasonUnknownType Reason = "unknown_type"
	// ReasonMissingField: a required field is absent, null or empty.
	ReasonMissingField Reason = "missing_field"
	// ReasonInvalidField: a field is present but of the wrong JSON type or
	// format.
	ReasonInvalidField Reason = "invalid_field"
	// ReasonProjectNotAllowed: the snapshot's project is outside
	// SNAPSWEEP_PROJECTS.
	ReasonProjectNotAllowed Reason = "project_not_allowed"
	// ReasonBadEnvelope: the Pub/Sub push envelope around the data is
	// malformed.
	ReasonBadEnvelope Reason = "bad_envelope"
	// ReasonTooLarge: the message exceeds the size limit.
	ReasonTooLarge Reason = "too_large"
	// ReasonFutureTime: the event is stamped further in the future than
	// SNAPSWEEP_MAX_CLOCK_SKEW allows (Field "time"). Accepting it would let
	// a job with a wrong clock push a snapshot's expiry out of reach.
	ReasonFutureTime Reason = "future_time"
	// ReasonConflictingDuplicate: the event's id was already used by an
	// event with other content (see Event.ContentHash; Field "id"). The same
	// event delivered again is a duplicate and is not rejected; a different
	// event under a used id is a producer bug, and neither event may
	// silently win.
	ReasonConflictingDuplicate Reason = "conflicting_duplicate"
)

// Reasons returns every rejection reason, in a fixed order; useful to
// pre-declare metric label values. The slice is new on every call.
func Reasons() []Reason {
	return []Reason{
		ReasonBadJSON, ReasonUnknownType, ReasonMissingField, ReasonInvalidField,
		ReasonProjectNotAllowed, ReasonBadEnvelope, ReasonTooLarge,
		ReasonFutureTime, ReasonConflictingDuplicate,
	}
}

// Valid reports whether r is one of the known reasons.
func (r Reason) Valid() bool {
	switch r {
	case ReasonBadJSON, ReasonUnknownType, ReasonMissingField, ReasonInvalidField,
		ReasonProjectNotAllowed, ReasonBadEnvelope, ReasonTooLarge,
		ReasonFutureTime, ReasonConflictingDuplicate:
		return true
	}
	return false
}

// RejectError says why a message can never be processed. Retrying cannot
// help: the caller acknowledges the message and records it.
type RejectError struct {
	// Reason classifies the problem.
	Reason Reason
	// Field is the JSON path of the offending field ("snapshot.name"), or
	// empty when the problem is not one field's.
	Field string
	// Detail says what is wrong, for the operator. It never contains more
	// than a short prefix of the message's content.
	Detail string
}

// Error formats the rejection as "reason: field: detail".
func (e *RejectError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s: %s", e.Reason, e.Detail)
	}
	return fmt.Sprintf("%s: %s: %s", e.Reason, e.Field, e.Detail)
}

// AsReject returns the *RejectError in err's chain, if there is one.
func AsReject(err error) (*RejectError, bool) {
	var re *RejectError
	if errors.As(err, &re) {
		return re, true
	}
	return nil, false
}

func missing(field string) error {
	return &RejectError{Reason: ReasonMissingField, Field: field, Detail: "is required"}
}

func invalid(field, detail string) error {
	return &RejectError{Reason: ReasonInvalidField, Field: field, Detail: detail}
}

// quote returns s quoted for an error detail, cut to a short prefix so that
// a hostile message cannot flood the logs.
func quote(s string) string { return Quote(s, 64) }

// Allowlist is the set of projects whose snapshots snapsweep may manage
// (SNAPSWEEP_PROJECTS). The zero value allows nothing.
type Allowlist map[string]bool

// NewAllowlist returns an allowlist of the given project ids. Entries are
// trimmed of spaces and empty ones ignored, so the result of splitting
// "a, b,," needs no cleaning.
func NewAllowlist(projects []string) Allowlist {
	a := make(Allowlist, len(projects))
	for _, p := range projects {
		if p = strings.TrimSpace(p); p != "" {
			a[p] = true
		}
	}
	return a
}

// Check returns a *RejectError with ReasonProjectNotAllowed unless project
// is in the allowlist.
func (a Allowlist) Check(project string) error {
	if a[project] {
		return nil
	}
	return &RejectError{
		Reason: ReasonProjectNotAllowed,
		Field:  "snapshot.project",
		Detail: fmt.Sprintf("project %s is not managed by this service (SNAPSWEEP_PROJECTS)", quote(project)),
	}
}
