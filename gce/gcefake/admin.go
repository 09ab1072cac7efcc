package gcefake

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// AdminPaths documents the admin endpoints of AdminHandler, for help texts.
const AdminPaths = `  POST /fake/snapshots  {"project","name","labels"}        create (or replace) a READY snapshot
  GET  /fake/snapshots?project=P                           every snapshot created or deleted in P: exists,
                                                           status, labels, deleteCalls, successfulDeletes,
                                                           quotaRejected
  POST /fake/inuse      {"project","name","n"}             the next n deletes of it fail 400 resourceInUseByAnotherResource
  POST /fake/slowops    {"project","name","seconds"}       its delete operations report RUNNING for that long
                                                           (the snapshot itself goes at the operation latency)
  GET  /fake/faults, POST /fake/faults {"failRate","failCode","failReason","quota"}
                                                           read or change fault injection (omitted fields stay);
                                                           quota: delete calls per minute of every project
  GET  /fake/quota, POST /fake/quota {"project","group","perMinute"}
                                                           read or set a rate quota per minute: group "writes"
                                                           (deletes, the default), "reads" (get, list) or
                                                           "operation reads"; project "" for every project
  GET  /fake/calls                                         call statistics, quota errors by project and minute,
                                                           and by caller (calls under /caller/NAME/compute/v1/...)`

// Faults is the body of POST /fake/faults and the answer of both /fake/faults methods.
// Omitted fields keep their value.
type Faults struct {
	FailRate   *float64 `json:"failRate,omitempty"`
	FailCode   *int     `json:"failCode,omitempty"`
	FailReason *string  `json:"failReason,omitempty"`
	// Quota is the delete (GroupWrites) quota of every project per wall-clock minute;
	// 0 is unlimited. Setting it replaces the delete quotas of single projects.
	Quota *int `json:"quota,omitempty"`
}

// SetFaults changes the random fault injection and the delete quota of every project; an
// omitted field keeps its value, except that a new FailCode without a FailReason takes the
// code's default reason. It checks everything before it changes anything.
func (f *Fake) SetFaults(req Faults) error {
	cur := f.FailureRate()
	rate, code, reason := cur.Rate, cur.Code, cur.Reason
	if code == 0 {
		code = http.StatusServiceUnavailable
	}
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
		return fmt.Errorf("failCode must be an HTTP error status (400-599), got %d", code)
	case req.Quota != nil && *req.Quota < 0:
		return fmt.Errorf("quota must not be negative, got %d", *req.Quota)
	}
	if req.Quota != nil {
		if err := f.SetQuota("", GroupWrites, *req.Quota); err != nil {
			return err
		}
	}
	f.SetFailureRate(code, reason, rate)
	return nil
}

// CurrentFaults returns the fault settings as GET /fake/faults reports them.
func (f *Fake) CurrentFaults() Faults {
	cur := f.FailureRate()
	code := cur.Code
	if code == 0 {
		code = http.StatusServiceUnavailable
	}
	reason := cur.Reason
	if reason == "" {
		reason = DefaultReason(code)
	}
	quota := f.Quota("", GroupWrites)
	return Faults{FailRate: &cur.Rate, FailCode: &code, FailReason: &reason, Quota: &quota}
}

// AdminHandler serves the Compute API paths as f does and, under /fake/, the admin
// endpoints listed in AdminPaths: what a local run, the demo or the chaos run needs to
// seed snapshots, change faults and quotas at run time, and read back what happened.
func (f *Fake) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/compute/v1/", f)
	mux.Handle("/batch/compute/v1", f)
	// A caller that puts its name in the base URL (SNAPSWEEP_COMPUTE_ENDPOINT
	// http://HOST/caller/serve-0; the Compute client keeps the path) gets its
	// calls counted under it (Call.Caller, Stats.QuotaErrorsByCaller).
	mux.HandleFunc("/caller/{caller}/", func(w http.ResponseWriter, r *http.Request) {
		caller := r.PathValue("caller")
		r2 := r.Clone(context.WithValue(r.Context(), callerKey{}, caller))
		r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/caller/"+caller)
		r2.URL.RawPath = ""
		f.ServeHTTP(w, r2)
	})
	mux.HandleFunc("POST /fake/snapshots", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project string            `json:"project"`
			Name    string            `json:"name"`
			Labels  map[string]string `json:"labels"`
		}
		if err := decode(w, r, &req); err != nil || req.Project == "" || req.Name == "" {
			http.Error(w, `want {"project","name","labels"}`, http.StatusBadRequest)
			return
		}
		f.AddSnapshot(req.Project, req.Name, req.Labels)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("GET /fake/snapshots", func(w http.ResponseWriter, r *http.Request) {
		project := r.URL.Query().Get("project")
		if project == "" {
			http.Error(w, "want ?project=P", http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, f.Facts(project))
	})
	mux.HandleFunc("POST /fake/inuse", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project string `json:"project"`
			Name    string `json:"name"`
			N       int    `json:"n"`
		}
		if err := decode(w, r, &req); err != nil || req.Project == "" || req.Name == "" || req.N < 0 {
			http.Error(w, `want {"project","name","n"} with n >= 0`, http.StatusBadRequest)
			return
		}
		f.InUse(req.Project, req.Name, req.N)
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /fake/slowops", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project string  `json:"project"`
			Name    string  `json:"name"`
			Seconds float64 `json:"seconds"`
		}
		if err := decode(w, r, &req); err != nil || req.Project == "" || req.Name == "" || req.Seconds < 0 {
			http.Error(w, `want {"project","name","seconds"} with seconds >= 0`, http.StatusBadRequest)
			return
		}
		f.SlowOperations(req.Project, req.Name, time.Duration(req.Seconds*float64(time.Second)))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /fake/faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, f.CurrentFaults())
	})
	mux.HandleFunc("POST /fake/faults", func(w http.ResponseWriter, r *http.Request) {
		var req Faults
		if err := decode(w, r, &req); err != nil {
			http.Error(w, `want {"failRate","failCode","failReason","quota"}: `+err.Error(), http.StatusBadRequest)
			return
		}
		if err := f.SetFaults(req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, f.CurrentFaults())
	})
	mux.HandleFunc("GET /fake/quota", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, f.Quotas())
	})
	mux.HandleFunc("POST /fake/quota", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Project   string `json:"project"`
			Group     string `json:"group"`
			PerMinute *int   `json:"perMinute"`
		}
		if err := decode(w, r, &req); err != nil || req.PerMinute == nil {
			http.Error(w, `want {"project","group","perMinute"}`, http.StatusBadRequest)
			return
		}
		if req.Group == "" {
			req.Group = GroupWrites
		}
		if err := f.SetQuota(req.Project, req.Group, *req.PerMinute); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		writeJSON(w, http.StatusOK, f.Quotas())
	})
	mux.HandleFunc("GET /fake/calls", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, f.Stats())
	})
	return mux
}

// callerKey carries the caller named by a /caller/{name}/ prefix.
type callerKey struct{}

func callerOf(ctx context.Context) string {
	c, _ := ctx.Value(callerKey{}).(string)
	return c
}

func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
