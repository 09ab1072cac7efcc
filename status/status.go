// Package status is GET /status: its wire types, the code that computes
// them from the registry (the service's handler and `snapsweep sessions
// show` both call it), and the one client of it (the CLI and the
// job-side reporter).
//
// It reads the registry and never changes it; it makes no decision about
// a snapshot.
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

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/store"
)

// Report is GET /status.
type Report struct {
	Counts   map[store.State]int64 `json:"counts"`
	Sessions []store.Session       `json:"sessions"`
	Breaker  string                `json:"breaker"`
	DryRun   bool                  `json:"dryRun"`
	Health   *Health               `json:"lastHealth,omitempty"`
	Version  string                `json:"version"`
	// Storage is what the cleanup is worth, overall and per project
	// (package cost); per session: /status?session=ID.
	Storage *Storage `json:"storage,omitempty"`
}

// Storage is the cost account of /status.
type Storage struct {
	Currency string                   `json:"currency"`
	Prices   string                   `json:"prices"`
	Overall  cost.Figures             `json:"overall"`
	Projects map[string]*cost.Figures `json:"projects"`
	Missing  []cost.MissingPrice      `json:"missingPrices,omitempty"`
	Savings  string                   `json:"savings"`
	Bounds   []string                 `json:"bounds"`
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

// NewHealth is the wire form of a stored health report.
func NewHealth(h store.HealthRecord) *Health {
	out := &Health{At: h.At, Status: h.Status}
	if json.Valid([]byte(h.Report)) {
		out.Report = json.RawMessage(h.Report)
	} else if h.Report != "" {
		// Never hide a stored report, even one that is not JSON.
		out.Report, _ = json.Marshal(h.Report)
	}
	return out
}

// Session is GET /status?session=ID: the session's record (with its
// cleanup outcome), its snapshots counted by state, its tasks by state
// (with the failed ones) and what its cleanup is worth.
type Session struct {
	Session *store.Session        `json:"session"`
	Counts  map[store.State]int64 `json:"counts"`
	// Tasks counts the session's tasks by state; Failed are its failed
	// tasks (with their errors).
	Tasks  map[store.TaskState]int64 `json:"tasks"`
	Failed []store.Task              `json:"failedTasks,omitempty"`
	// Storage is what the session's cleanup is worth; Retained the cost of
	// keeping each of its retained snapshots until its retention ends.
	Storage  *cost.Figures       `json:"storage"`
	Currency string              `json:"currency"`
	Retained []cost.Retention    `json:"retained,omitempty"`
	Missing  []cost.MissingPrice `json:"missingPrices,omitempty"`
	Savings  string              `json:"savings"`
}

// Source computes the status from the registry.
type Source struct {
	Store  store.Registry
	Prices cost.Prices
	// Now is the clock (default time.Now); Breaker reports the Compute
	// breaker's state (nil: "unknown").
	Now     func() time.Time
	Breaker func() string
	DryRun  bool
	Version string
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Overall is GET /status.
func (s *Source) Overall(ctx context.Context) (Report, error) {
	counts, err := s.Store.CountByState(ctx)
	if err != nil {
		return Report{}, err
	}
	sessions, err := s.Store.ListSessions(ctx, 50)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Counts: counts, Sessions: sessions, Breaker: "unknown", DryRun: s.DryRun, Version: s.Version}
	if s.Breaker != nil {
		rep.Breaker = s.Breaker()
	}
	if h, err := s.Store.LatestHealth(ctx, 1); err == nil && len(h) > 0 {
		rep.Health = NewHealth(h[0])
	}
	recs, _, partial, err := cost.Load(ctx, s.Store, cost.Filter{Max: MaxRecords})
	if err != nil {
		return Report{}, err
	}
	c := cost.Compute(recs, s.Prices, s.now())
	rep.Storage = &Storage{Currency: c.Currency, Prices: c.Prices, Overall: c.Overall, Projects: c.Projects,
		Missing: c.Missing, Savings: cost.Line(c.Overall, c.Currency), Bounds: c.Bounds, Partial: partial}
	return rep, nil
}

// Session is GET /status?session=ID. A session the registry does not know
// is store.ErrNotFound.
func (s *Source) Session(ctx context.Context, id string) (Session, error) {
	sess, err := s.Store.GetSession(ctx, id)
	if err != nil {
		return Session{}, err
	}
	out := Session{Session: sess, Counts: map[store.State]int64{}, Tasks: map[store.TaskState]int64{}}
	for _, st := range store.States() {
		n, err := s.Store.CountSnapshots(ctx, store.Query{SessionID: id, States: []store.State{st}})
		if err != nil {
			return Session{}, fmt.Errorf("count snapshots: %w", err)
		}
		out.Counts[st] = n
	}
	for _, st := range []store.TaskState{store.TaskRunning, store.TaskSucceeded, store.TaskFailed} {
		tasks, err := s.Store.ListTasks(ctx, id, st)
		if err != nil {
			return Session{}, fmt.Errorf("list tasks: %w", err)
		}
		out.Tasks[st] = int64(len(tasks))
		if st == store.TaskFailed {
			out.Failed = tasks
		}
	}
	recs, _, _, err := cost.Load(ctx, s.Store, cost.Filter{SessionID: id})
	if err != nil {
		return Session{}, err
	}
	c := cost.Compute(recs, s.Prices, s.now())
	out.Storage, out.Retained, out.Missing, out.Currency = c.Sessions[id], c.Retained, c.Missing, c.Currency
	if out.Storage == nil {
		out.Storage = &cost.Figures{Kept: map[cost.Reason]cost.Amount{}}
	}
	out.Savings = cost.Line(*out.Storage, c.Currency)
	return out, nil
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

// Session reads GET /status?session=ID into v (a *Session, or any type
// that reads the part of it the caller needs). A session the service does
// not know is ErrSessionNotFound.
func (c *Client) Session(ctx context.Context, id string, v any) error {
	u := c.URL.JoinPath("status")
	u.RawQuery = url.Values{"session": {id}}.Encode()
	err := c.do(ctx, http.MethodGet, u, nil, v)
	var he *HTTPError
	if errors.As(err, &he) && he.Code == http.StatusNotFound {
		return fmt.Errorf("%w: %s", ErrSessionNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("session status: %w", err)
	}
	return nil
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
