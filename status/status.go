// Package status is GET /status on the wire: its types and the one client
// of a running service (GET /status, GET /status?session=ID, POST
// /scheduler/sweep), used by the operator commands and the job-side
// reporter.
//
// It imports nothing of the service (no registry, no Firestore), so that a
// migration job can read its session's status through package reporter
// without pulling the service in. The service computes the answer from
// the registry (service.StatusSource); this package neither reads nor
// decides anything.
package status

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/snapsweep/snapsweep/cost/figures"
	"github.com/snapsweep/snapsweep/events"
)

// Report is GET /status.
type Report struct {
	// Counts counts the registry's snapshots by state (active, retained,
	// cleanup_pending, deleting, deleted, failed, refused, held, vanished).
	Counts   map[string]int64 `json:"counts"`
	Sessions []SessionRecord  `json:"sessions"`
	Breaker  string           `json:"breaker"`
	DryRun   bool             `json:"dryRun"`
	Health   *Health          `json:"lastHealth,omitempty"`
	Version  string           `json:"version"`
	// Storage is what the cleanup is worth, overall and per project
	// (package cost); per session: /status?session=ID.
	Storage *Storage `json:"storage,omitempty"`
}

// Storage is the cost account of /status.
type Storage struct {
	Currency string                      `json:"currency"`
	Prices   string                      `json:"prices"`
	Overall  figures.Figures             `json:"overall"`
	Projects map[string]*figures.Figures `json:"projects"`
	Missing  []figures.MissingPrice      `json:"missingPrices,omitempty"`
	Savings  string                      `json:"savings"`
	Bounds   []string                    `json:"bounds"`
	// Partial is set when the registry held more than MaxRecords records:
	// `snapsweep report` reads them all.
	Partial bool `json:"partial,omitempty"`
}

// MaxRecords bounds the records one GET /status reads for its cost figures
// (one Firestore read each).
const MaxRecords = 20000

// Health is the latest stored health report, the report itself as JSON
// (the registry stores it as text).
type Health struct {
	At     time.Time       `json:"at"`
	Status string          `json:"status"`
	Report json.RawMessage `json:"report,omitempty"`
}

// NewHealth is the wire form of a health report stored at at with status
// st as text.
func NewHealth(at time.Time, st, report string) *Health {
	out := &Health{At: at, Status: st}
	if json.Valid([]byte(report)) {
		out.Report = json.RawMessage(report)
	} else if report != "" {
		// Never hide a stored report, even one that is not JSON.
		out.Report, _ = json.Marshal(report)
	}
	return out
}

// Session is GET /status?session=ID: the session's record (with its
// cleanup outcome), its snapshots counted by state, its tasks by state
// (with the failed ones) and what its cleanup is worth.
type Session struct {
	Session SessionRecord `json:"session"`
	// Counts counts the session's snapshots by state.
	Counts map[string]int64 `json:"counts"`
	// Tasks counts the session's tasks by state (running, succeeded,
	// failed); Failed are its failed tasks (with their errors).
	Tasks  map[string]int64 `json:"tasks"`
	Failed []Task           `json:"failedTasks,omitempty"`
	// Storage is what the session's cleanup is worth; Retained the cost of
	// keeping each of its retained snapshots until its retention ends.
	Storage  *figures.Figures       `json:"storage"`
	Currency string                 `json:"currency"`
	Retained []figures.Retention    `json:"retained,omitempty"`
	Missing  []figures.MissingPrice `json:"missingPrices,omitempty"`
	Savings  string                 `json:"savings"`
}

// SessionRecord is the service's record of a session (the registry's
// session record, field for field).
type SessionRecord struct {
	SessionID string `json:"sessionId,omitempty"`
	// State is "running" or "completed" (after session.completed).
	State       string    `json:"state,omitempty"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	CompletedAt time.Time `json:"completedAt,omitzero"`
	Outcome     Outcome   `json:"outcome,omitempty"`
	OutcomeAt   time.Time `json:"outcomeAt,omitzero"`
	// Deleted and Failed are the counts the outcome was judged on (failed
	// includes refused).
	Deleted   int64     `json:"deleted,omitempty"`
	Failed    int64     `json:"failed,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
}

// Task is the service's record of a task (the registry's task record,
// field for field).
type Task struct {
	SessionID string `json:"sessionId,omitempty"`
	TaskID    string `json:"taskId,omitempty"`
	// State is running, succeeded or failed; StateTime the source time of
	// the event that set it.
	State        string    `json:"state,omitempty"`
	StateTime    time.Time `json:"stateTime,omitzero"`
	StateEventID string    `json:"stateEventId,omitempty"`
	// FailedAt is the source time of the task's latest failure, whatever
	// its state is now; FailureSeenAt is when snapsweep saw that failure.
	FailedAt      time.Time `json:"failedAt,omitzero"`
	FailureSeenAt time.Time `json:"failureSeenAt,omitzero"`
	StartedAt     time.Time `json:"startedAt,omitzero"`
	FinishedAt    time.Time `json:"finishedAt,omitzero"`
	Error         string    `json:"error,omitempty"`
	UpdatedAt     time.Time `json:"updatedAt,omitzero"`
}

// Outcome is a completed session's cleanup outcome, as the service judges it
// against SNAPSWEEP_SESSION_FAILURE_TOLERANCE.
type Outcome string

// The outcomes a session can have; a session that is not completed has none
// ("").
const (
	// OutcomePending: the session is completed and deletions are under way.
	OutcomePending Outcome = "pending"
	// OutcomeCleaned: every snapshot due for deletion is deleted.
	OutcomeCleaned Outcome = "cleaned"
	// OutcomeCleanedWithErrors: some deletions failed or were refused, within
	// the failure tolerance.
	OutcomeCleanedWithErrors Outcome = "cleaned_with_errors"
	// OutcomeCleanupFailed: more deletions failed than the tolerance allows;
	// an operator must look.
	OutcomeCleanupFailed Outcome = "cleanup_failed"
)

// Final reports whether the outcome is settled: cleanup is over, with or
// without errors. Snapshots of failed tasks are retained, not pending, so
// they do not keep a session from a final outcome.
func (o Outcome) Final() bool {
	return o == OutcomeCleaned || o == OutcomeCleanedWithErrors || o == OutcomeCleanupFailed
}

// ErrSessionNotFound is returned by Client.Session when the service knows
// no such session (yet: events are processed asynchronously).
var ErrSessionNotFound = errors.New("session not found")

// MaxAnswerBytes bounds an answer the client reads.
const MaxAnswerBytes = 4 << 20

// Client calls a running service: GET /status and POST /scheduler/sweep.
type Client struct {
	// URL is the service's base URL.
	URL *url.URL
	// HTTP carries the caller's credentials (on Cloud Run, e.g.
	// idtoken.NewClient with the service URL as audience); nil means
	// http.DefaultClient.
	HTTP *http.Client
}

// NewClient checks base (an absolute http(s) URL) and returns its client.
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("service URL %q must be an absolute http(s) URL", base)
	}
	return &Client{URL: u, HTTP: hc}, nil
}

// Status reads GET /status.
func (c *Client) Status(ctx context.Context) (*Report, error) {
	var rep Report
	if err := c.do(ctx, http.MethodGet, c.URL.JoinPath("status"), nil, &rep); err != nil {
		return nil, fmt.Errorf("status of %s: %w", c.URL.Host, err)
	}
	return &rep, nil
}

// Session reads GET /status?session=ID. A session the service does not
// know is ErrSessionNotFound; an id that is not a valid session id is
// refused before any request.
func (c *Client) Session(ctx context.Context, id string) (*Session, error) {
	if !events.ValidSessionID(id) {
		return nil, fmt.Errorf("invalid session id %q", id)
	}
	u := c.URL.JoinPath("status")
	u.RawQuery = url.Values{"session": {id}}.Encode()
	var st Session
	err := c.do(ctx, http.MethodGet, u, nil, &st)
	var he *HTTPError
	if errors.As(err, &he) && he.Code == http.StatusNotFound {
		return nil, fmt.Errorf("%w: %s", ErrSessionNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("session status: %w", err)
	}
	if st.Session.SessionID == "" {
		return nil, errors.New("session status: answer has no session record")
	}
	return &st, nil
}

// Sweep asks the service for a sweep (POST /scheduler/sweep) and returns
// its report into v. A sweep that failed answers with an HTTPError whose
// Body may still hold a report.
func (c *Client) Sweep(ctx context.Context, dryRun bool, v any) error {
	body, _ := json.Marshal(map[string]bool{"dryRun": dryRun})
	if err := c.do(ctx, http.MethodPost, c.URL.JoinPath("scheduler", "sweep"), body, v); err != nil {
		return fmt.Errorf("sweep on %s: %w", c.URL.Host, err)
	}
	return nil
}

// HTTPError is an answer other than 200.
type HTTPError struct {
	Code   int
	Status string
	// Message is the answer's "error" field, or its body shortened.
	Message string
	Body    []byte
}

func (e *HTTPError) Error() string { return e.Status + ": " + e.Message }

func (c *Client) do(ctx context.Context, method string, u *url.URL, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxAnswerBytes))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		msg := events.Cut(strings.Join(strings.Fields(string(data)), " "), 200)
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return &HTTPError{Code: resp.StatusCode, Status: resp.Status, Message: msg, Body: data}
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}
