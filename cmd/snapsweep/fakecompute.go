package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/gce/gcefake"
)

// fakeComputeCommand serves the in-process Compute fake on a port, for
// local runs without a GCP account. Besides the Compute REST paths it
// offers admin endpoints under /fake/: create snapshots, inject faults
// (random errors, a delete quota, snapshots in use) and read back what
// happened to every snapshot (the chaos run checks its invariants on them).
func fakeComputeCommand() *cobra.Command {
	var (
		addr                 string
		latency, callLatency time.Duration
		quota                int
		failRate             float64
		failCode             int
		failReason           string
		inUseEvery, inUseN   int
		seed                 uint64
	)
	cmd := &cobra.Command{
		Use:   "fake-compute",
		Short: "Serve a fake of the Compute Engine snapshots API for local runs and tests",
		Long: `Serve a fake of the Compute Engine snapshots API for local runs and tests.

Admin endpoints (not part of the Compute API):
  POST /fake/snapshots  {"project","name","labels"}        create (or replace) a READY snapshot
  GET  /fake/snapshots?project=P                           every snapshot created or deleted in P: exists,
                                                           status, labels, deleteCalls, successfulDeletes
  POST /fake/inuse      {"project","name","n"}             the next n deletes of it fail 400 resourceInUseByAnotherResource
  POST /fake/slowops    {"project","name","seconds"}       its delete operations report RUNNING for that long
                                                           (the snapshot itself goes at --latency)
  GET  /fake/faults, POST /fake/faults {"failRate","failCode","failReason","quota"}
                                                           read or change fault injection (omitted fields stay)
  GET  /fake/calls                                         call statistics`,
		Example: `  snapsweep fake-compute --addr 127.0.0.1:8089 &
  curl -X POST localhost:8089/fake/snapshots -d '{"project":"snapsweep-local","name":"snap-1","labels":{"migration-session":"s1"}}'
  SNAPSWEEP_COMPUTE_ENDPOINT=http://127.0.0.1:8089 snapsweep serve

  # 30 % of all calls answer 503, at most 5 deletes per second per project:
  snapsweep fake-compute --fail-rate 0.3 --fail-code 503 --quota 5
  # clear the faults at run time:
  curl -X POST localhost:8089/fake/faults -d '{"failRate":0,"quota":0}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if failRate < 0 || failRate > 1 {
				return fmt.Errorf("--fail-rate must be within [0, 1], got %g", failRate)
			}
			if quota < 0 || inUseEvery < 0 || inUseN < 0 {
				return fmt.Errorf("--quota, --in-use-every and --in-use-n must not be negative")
			}
			lis, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen: %w", err)
			}
			fake := gcefake.New(gcefake.Options{Latency: latency, CallLatency: callLatency, Seed: seed})
			adm := newFakeAdmin(fake, quota)
			adm.inUseEvery, adm.inUseN = inUseEvery, inUseN
			if failRate > 0 {
				if err := adm.setFaults(fakeFaults{FailRate: &failRate, FailCode: &failCode, FailReason: &failReason}); err != nil {
					return err
				}
			}
			srv := &http.Server{Handler: adm.handler(), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-cmd.Context().Done()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = srv.Shutdown(ctx)
			}()
			fmt.Fprintf(cmd.OutOrStdout(), "{\"severity\":\"INFO\",\"message\":\"fake compute serving\",\"addr\":%q}\n", lis.Addr().String())
			if err := srv.Serve(lis); err != http.ErrServerClosed {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8089", "listen address")
	cmd.Flags().DurationVar(&latency, "latency", 500*time.Millisecond, "how long a delete operation runs")
	cmd.Flags().DurationVar(&callLatency, "call-latency", 0, "added to every Compute API call")
	cmd.Flags().IntVar(&quota, "quota", 0, "delete calls per second per project before 403 rateLimitExceeded (0: unlimited)")
	cmd.Flags().Float64Var(&failRate, "fail-rate", 0, "share of all Compute API calls that fail with --fail-code (0-1)")
	cmd.Flags().IntVar(&failCode, "fail-code", http.StatusServiceUnavailable, "HTTP status of the injected random failures")
	cmd.Flags().StringVar(&failReason, "fail-reason", "", "error reason of the injected failures (default: the usual one for --fail-code)")
	cmd.Flags().IntVar(&inUseEvery, "in-use-every", 0, "every K-th snapshot created through POST /fake/snapshots is in use (0: none)")
	cmd.Flags().IntVar(&inUseN, "in-use-n", 3, "how many deletes of such a snapshot fail with resourceInUseByAnotherResource")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the random fault injection")
	return cmd
}

// fakeComputeHandler serves f with the admin endpoints and no faults.
func fakeComputeHandler(f *gcefake.Fake) http.Handler { return newFakeAdmin(f, 0).handler() }

// fakeFaults is the body of POST /fake/faults and the answer of both
// /fake/faults methods. Omitted fields keep their value.
type fakeFaults struct {
	FailRate   *float64 `json:"failRate,omitempty"`
	FailCode   *int     `json:"failCode,omitempty"`
	FailReason *string  `json:"failReason,omitempty"`
	// Quota is delete calls per second per project (0: unlimited).
	Quota *int `json:"quota,omitempty"`
}

// fakeAdmin wraps the fake with what the admin endpoints need beyond the
// fake's own API: a delete quota that can change at run time (the fake's is
// fixed at creation) and the names of every snapshot seen, so that the state
// of each can be read back.
type fakeAdmin struct {
	f *gcefake.Fake

	inUseEvery, inUseN int

	mu         sync.Mutex
	failRate   float64
	failCode   int
	failReason string
	quota      int
	window     map[string]quotaWindow // by project
	rejected   map[[2]string]int      // quota rejections by project and name
	rejections int
	names      map[string]map[string]bool // project -> names created or deleted
	created    int
	slow       map[[2]string]time.Duration // project, snapshot -> how long its delete operations stay RUNNING
	slowOps    map[[2]string]time.Time     // project, operation -> RUNNING until
}

type quotaWindow struct {
	second int64
	count  int
}

func newFakeAdmin(f *gcefake.Fake, quota int) *fakeAdmin {
	return &fakeAdmin{f: f, quota: quota, failCode: http.StatusServiceUnavailable,
		window: map[string]quotaWindow{}, rejected: map[[2]string]int{}, names: map[string]map[string]bool{},
		slow: map[[2]string]time.Duration{}, slowOps: map[[2]string]time.Time{}}
}

func defaultReason(code int) string {
	switch code {
	case http.StatusTooManyRequests, http.StatusForbidden:
		return "rateLimitExceeded"
	case http.StatusNotFound:
		return "notFound"
	case http.StatusBadRequest:
		return "badRequest"
	}
	return "backendError"
}

func (a *fakeAdmin) setFaults(req fakeFaults) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	rate, code, reason := a.failRate, a.failCode, a.failReason
	if req.FailRate != nil {
		rate = *req.FailRate
	}
	if req.FailCode != nil {
		code = *req.FailCode
		if req.FailReason == nil {
			reason = ""
		}
	}
	if req.FailReason != nil {
		reason = *req.FailReason
	}
	switch {
	case rate < 0 || rate > 1:
		return fmt.Errorf("failRate must be within [0, 1], got %g", rate)
	case code < 400 || code > 599:
		return fmt.Errorf("failCode must be an HTTP error status, got %d", code)
	case req.Quota != nil && *req.Quota < 0:
		return fmt.Errorf("quota must not be negative, got %d", *req.Quota)
	}
	if req.Quota != nil {
		a.quota = *req.Quota
	}
	if reason == "" {
		reason = defaultReason(code)
	}
	a.failRate, a.failCode, a.failReason = rate, code, reason
	a.f.SetFailureRate(code, reason, rate)
	return nil
}

func (a *fakeAdmin) faults() fakeFaults {
	a.mu.Lock()
	defer a.mu.Unlock()
	rate, code, reason, quota := a.failRate, a.failCode, a.failReason, a.quota
	return fakeFaults{FailRate: &rate, FailCode: &code, FailReason: &reason, Quota: &quota}
}

func (a *fakeAdmin) remember(project, name string) {
	if a.names[project] == nil {
		a.names[project] = map[string]bool{}
	}
	a.names[project][name] = true
}

// compute serves the Compute API paths: it notes the snapshot of every
// delete and applies the delete quota before the fake sees the call.
func (a *fakeAdmin) compute(w http.ResponseWriter, r *http.Request) {
	project, name, ok := deletePath(r)
	if ok {
		a.mu.Lock()
		a.remember(project, name)
		limited := false
		if a.quota > 0 {
			sec := time.Now().Unix()
			win := a.window[project]
			if win.second != sec {
				win = quotaWindow{second: sec}
			}
			win.count++
			a.window[project] = win
			if win.count > a.quota {
				limited = true
				a.rejected[[2]string{project, name}]++
				a.rejections++
			}
		}
		slow := a.slow[[2]string{project, name}]
		a.mu.Unlock()
		if limited {
			w.Header().Set("Content-Type", "application/json; charset=UTF-8")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`{"error":{"code":403,"message":"Rate Limit Exceeded","errors":[{"domain":"usageLimits","reason":"rateLimitExceeded","message":"Rate Limit Exceeded"}]}}`))
			return
		}
		if slow > 0 {
			// Note the operation; its polls answer RUNNING for a while.
			a.rewrite(w, r, func(op map[string]any) {
				if n, _ := op["name"].(string); n != "" {
					a.mu.Lock()
					if _, seen := a.slowOps[[2]string{project, n}]; !seen {
						a.slowOps[[2]string{project, n}] = time.Now().Add(slow)
					}
					a.mu.Unlock()
				}
				running(op)
			})
			return
		}
	}
	if project, op, ok := operationPath(r); ok {
		a.mu.Lock()
		until, slow := a.slowOps[[2]string{project, op}]
		a.mu.Unlock()
		if slow && time.Now().Before(until) {
			a.rewrite(w, r, running)
			return
		}
	}
	a.f.ServeHTTP(w, r)
}

// running makes an operation in JSON look unfinished.
func running(op map[string]any) {
	if _, isOp := op["operationType"]; !isOp {
		return
	}
	op["status"], op["progress"] = "RUNNING", 0
	delete(op, "endTime")
	delete(op, "error")
	delete(op, "httpErrorStatusCode")
	delete(op, "httpErrorMessage")
}

// rewrite serves r through the fake and lets edit change a 200 answer.
func (a *fakeAdmin) rewrite(w http.ResponseWriter, r *http.Request, edit func(map[string]any)) {
	rec := &recorder{header: http.Header{}, code: http.StatusOK}
	a.f.ServeHTTP(rec, r)
	body := rec.body.Bytes()
	if rec.code == http.StatusOK {
		var m map[string]any
		if json.Unmarshal(body, &m) == nil {
			edit(m)
			if b, err := json.Marshal(m); err == nil {
				body = b
			}
		}
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	w.WriteHeader(rec.code)
	_, _ = w.Write(body)
}

// recorder keeps an answer in memory.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }

// operationPath returns the project and operation of a globalOperations.get call.
func operationPath(r *http.Request) (project, op string, ok bool) {
	if r.Method != http.MethodGet {
		return "", "", false
	}
	// /compute/v1/projects/{project}/global/operations/{op}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 7 || parts[0] != "compute" || parts[1] != "v1" || parts[2] != "projects" || parts[4] != "global" || parts[5] != "operations" {
		return "", "", false
	}
	return parts[3], parts[6], true
}

// deletePath returns the project and snapshot of a snapshots.delete call.
func deletePath(r *http.Request) (project, name string, ok bool) {
	if r.Method != http.MethodDelete {
		return "", "", false
	}
	// /compute/v1/projects/{project}/global/snapshots/{name}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if len(parts) != 7 || parts[0] != "compute" || parts[1] != "v1" || parts[2] != "projects" || parts[4] != "global" || parts[5] != "snapshots" {
		return "", "", false
	}
	return parts[3], parts[6], true
}

// fakeSnapshotFacts is one entry of GET /fake/snapshots.
type fakeSnapshotFacts struct {
	Name   string            `json:"name"`
	Exists bool              `json:"exists"`
	Status string            `json:"status,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// DeleteCalls counts every delete call that named it, whatever the
	// answer (quota rejections included); SuccessfulDeletes counts the
	// delete operations that removed it (more than one means deleted twice).
	DeleteCalls       int `json:"deleteCalls"`
	SuccessfulDeletes int `json:"successfulDeletes"`
	QuotaRejected     int `json:"quotaRejected,omitempty"`
}

func (a *fakeAdmin) snapshots(project string) []fakeSnapshotFacts {
	a.mu.Lock()
	names := slices.Sorted(maps.Keys(a.names[project]))
	rejected := make([]int, len(names))
	for i, n := range names {
		rejected[i] = a.rejected[[2]string{project, n}]
	}
	a.mu.Unlock()
	out := make([]fakeSnapshotFacts, 0, len(names))
	for i, n := range names {
		facts := fakeSnapshotFacts{Name: n, DeleteCalls: a.f.DeleteCalls(project, n) + rejected[i],
			SuccessfulDeletes: a.f.SuccessfulDeletes(project, n), QuotaRejected: rejected[i]}
		if s, ok := a.f.Snapshot(project, n); ok {
			facts.Exists, facts.Status, facts.Labels = true, s.Status, s.Labels
		}
		out = append(out, facts)
	}
	return out
}

// stats is the fake's statistics with the quota rejections of the admin
// layer counted in, as if the fake had answered them.
func (a *fakeAdmin) stats() gcefake.Stats {
	st := a.f.Stats()
	a.mu.Lock()
	n := a.rejections
	a.mu.Unlock()
	if n > 0 {
		st.Calls += n
		st.ByStatus[http.StatusForbidden] += n
		st.ByMethod["snapshots.delete"] += n
		st.QuotaErrors += n
	}
	return st
}

func writeFakeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (a *fakeAdmin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/compute/v1/", a.compute)
	mux.HandleFunc("POST /fake/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project string            `json:"project"`
			Name    string            `json:"name"`
			Labels  map[string]string `json:"labels"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Project == "" || req.Name == "" {
			http.Error(w, "want {\"project\",\"name\",\"labels\"}", http.StatusBadRequest)
			return
		}
		a.f.AddSnapshot(req.Project, req.Name, req.Labels)
		a.mu.Lock()
		a.remember(req.Project, req.Name)
		a.created++
		inUse := a.inUseEvery > 0 && a.created%a.inUseEvery == 0
		a.mu.Unlock()
		if inUse && a.inUseN > 0 {
			a.f.InUse(req.Project, req.Name, a.inUseN)
		}
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /fake/snapshots", func(w http.ResponseWriter, r *http.Request) {
		project := r.URL.Query().Get("project")
		if project == "" {
			http.Error(w, "want ?project=P", http.StatusBadRequest)
			return
		}
		writeFakeJSON(w, http.StatusOK, a.snapshots(project))
	})
	mux.HandleFunc("POST /fake/inuse", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project string `json:"project"`
			Name    string `json:"name"`
			N       int    `json:"n"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Project == "" || req.Name == "" || req.N < 0 {
			http.Error(w, "want {\"project\",\"name\",\"n\"} with n >= 0", http.StatusBadRequest)
			return
		}
		a.f.InUse(req.Project, req.Name, req.N)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /fake/slowops", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project string  `json:"project"`
			Name    string  `json:"name"`
			Seconds float64 `json:"seconds"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil || req.Project == "" || req.Name == "" || req.Seconds < 0 {
			http.Error(w, "want {\"project\",\"name\",\"seconds\"} with seconds >= 0", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.slow[[2]string{req.Project, req.Name}] = time.Duration(req.Seconds * float64(time.Second))
		a.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /fake/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeFakeJSON(w, http.StatusOK, a.faults())
	})
	mux.HandleFunc("POST /fake/faults", func(w http.ResponseWriter, r *http.Request) {
		var req fakeFaults
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&req); err != nil {
			http.Error(w, "want {\"failRate\",\"failCode\",\"failReason\",\"quota\"}: "+err.Error(), http.StatusBadRequest)
			return
		}
		if err := a.setFaults(req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeFakeJSON(w, http.StatusOK, a.faults())
	})
	mux.HandleFunc("GET /fake/calls", func(w http.ResponseWriter, _ *http.Request) {
		writeFakeJSON(w, http.StatusOK, a.stats())
	})
	return mux
}
