// Package gcefake is an in-process fake of the Compute Engine REST API v1, limited to what
// snapsweep uses: reading, listing and deleting global snapshots and reading global
// operations. It speaks the wire format the official Go REST client sends and expects, so
// tests and the local demo run the real client against it (httptest.NewServer(fake)).
//
// Beyond the API it offers what tests need: Go methods to seed snapshots, fault injection
// (error answers, outages, resources in use, failed and slow operations), rate quotas
// counted the way Compute counts them (per project and quota group, in synchronized
// wall-clock minutes; see SetQuota), and a call log with counters to assert that nothing was
// deleted twice. Every setting can change at run time, through Go methods or through the
// admin endpoints of AdminHandler, which `snapsweep fake-compute` serves on a port.
//
// It is test and local-run support only; no production path may depend on it. Every
// behaviour it models follows Compute's documented behaviour, with the source named.
package gcefake

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Options configures a Fake. The zero value is a fast, fault-free API.
type Options struct {
	// Latency is how long a delete operation runs: the operation stays RUNNING and the
	// snapshot DELETING for this long (by the Now clock). Zero finishes deletes at once.
	Latency time.Duration
	// CallLatency is added to every request (real time), to model network and API latency.
	CallLatency time.Duration
	// Quota is the rate quota of every project: calls per wall-clock minute (by the Now
	// clock) by quota group (GroupWrites, GroupReads, GroupOperationReads); a group not
	// named, or 0, is unlimited. Calls over it answer 403 rateLimitExceeded. SetQuota
	// changes it at run time, also for single projects.
	Quota map[string]int
	// InUseEvery makes every InUseEvery-th snapshot added (AddSnapshot, POST
	// /fake/snapshots) in use for its first InUseTimes deletes (see InUse); 0 turns it off.
	InUseEvery, InUseTimes int
	// Now is the fake's clock for operation latency, the quota windows and timestamps.
	// Default time.Now.
	Now func() time.Time
	// Seed seeds the random fault injection of SetFailureRate, so a run can be repeated.
	Seed uint64
	// SizingTime is how long after its creation (by the Now clock) a snapshot reports
	// storageBytesStatus UPDATING, with a partial storageBytes, as Compute does while it
	// computes a new snapshot's size. Default one minute; negative turns it off.
	SizingTime time.Duration
}

// Size is what the fake reports about a snapshot's storage (the Snapshot resource's
// storageBytes, diskSizeGb, storageBytesStatus, storageLocations, snapshotType and
// chainName fields).
type Size struct {
	// StorageBytes is the final stored size; while the size is UPDATING the fake reports
	// half of it.
	StorageBytes int64
	DiskSizeGb   int64
	// Status is UP_TO_DATE or UPDATING. Empty means UPDATING during SizingTime after the
	// creation, then UP_TO_DATE; a status set explicitly stays as set.
	Status       string
	Locations    []string
	SnapshotType string // STANDARD or ARCHIVE
	ChainName    string
}

// Snapshot is a snapshot as the fake stores it.
type Snapshot struct {
	Project      string
	Name         string
	Labels       map[string]string
	Status       string // READY, or DELETING while a delete operation runs
	CreationTime time.Time
	SourceDisk   string
	// Size is the snapshot's storage as the fake reports it (see Size).
	Size Size
	// ID is the server-assigned numeric id (Snapshot.id in the Compute API reference: "the
	// unique identifier for the resource ... defined by the server"). Names are unique only
	// while a snapshot exists; a snapshot created under a reused name gets a new id, which
	// AddSnapshot models by assigning the next id on every call.
	ID uint64
}

// Call is one request the fake answered.
type Call struct {
	// Method is the Compute API method: "snapshots.get", "snapshots.list",
	// "snapshots.delete", "globalOperations.get", "globalOperations.wait", or
	// "unsupported" for a request the fake does not implement.
	Method    string
	Project   string
	Name      string // snapshot or operation name; empty for list
	RequestID string // the requestId query parameter of a delete
	// Caller names who made the call: the name in a /caller/{name}/ prefix
	// of the path (AdminHandler), empty without one.
	Caller string
	Status int // HTTP status of the answer
	Time   time.Time
}

// Stats sums up the calls the fake answered.
type Stats struct {
	Calls    int
	ByStatus map[int]int
	ByMethod map[string]int
	// QuotaErrors counts answers that said "rate limited": 429, or any answer with a
	// rate-limit or quota reason (the rate quotas and injected ones).
	QuotaErrors int
	// QuotaErrorsByProject counts them by project, and QuotaErrorsByProjectMinute by
	// project and wall-clock minute of the Now clock ("2006-01-02T15:04Z").
	QuotaErrorsByProject       map[string]int
	QuotaErrorsByProjectMinute map[string]map[string]int
	// QuotaErrorsByCaller counts the quota errors of calls that named their
	// caller (Call.Caller), by caller, project and wall-clock minute: what
	// each of several service instances given the fake's URL with a
	// /caller/{name} path was answered.
	QuotaErrorsByCaller map[string]map[string]map[string]int
	// Deleted counts snapshots removed by delete operations.
	Deleted int
}

// Fake is an http.Handler serving the Compute REST API paths under /compute/v1/. It is safe
// for concurrent use.
type Fake struct {
	opts Options
	now  func() time.Time
	mux  *http.ServeMux

	mu         sync.Mutex
	rnd        *rand.Rand
	nextID     uint64
	snapshots  map[key]*snapshot
	operations map[key]*operation // by project and operation name
	requests   map[key]*operation // by project and requestId
	pending    map[*operation]bool
	failRate   fault
	failNext   map[key]*fault
	inUse      map[key]int
	outage     bool
	opFaults   map[key]opFault
	slowOps    map[key]time.Duration // how long a snapshot's delete operations report RUNNING
	calls      []Call
	deleteCall map[key]int
	deleted    map[key]int
	deletedAt  map[key]time.Time // when a delete operation last removed it
	stats      Stats

	quotaDefault   map[string]int      // by group
	quotaByProject map[quotaKey]int    // overrides of single projects
	windows        map[quotaKey]window // the current minute's count
	quotaRejected  map[key]int         // deletes refused as rate limited, by snapshot
	seen           map[string]map[string]bool
	added          int // snapshots added, for InUseEvery
	inUseEvery     int
	inUseTimes     int
}

type key struct{ project, name string }

type snapshot struct {
	Snapshot
	id       uint64
	deleting *operation // the operation deleting it, while Status is DELETING
}

type operation struct {
	project, name string
	id            uint64
	target        key
	targetID      uint64
	inserted      time.Time
	doneAt        time.Time // when the delete takes effect on the snapshot
	reportAt      time.Time // when the operation reports DONE (at doneAt or later)
	settled       bool      // the effect on the snapshot happened
	done          bool
	fault         *opFault // how it fails when done; nil for success
}

type fault struct {
	n      int     // FailNext: calls left
	p      float64 // SetFailureRate: probability
	code   int
	reason string
}

type opFault struct {
	code           int
	reason         string
	withHTTPStatus bool
}

// New returns a Fake with no snapshots.
func New(opts Options) *Fake {
	f := &Fake{
		opts:       opts,
		now:        opts.Now,
		rnd:        rand.New(rand.NewPCG(opts.Seed, opts.Seed^0x5eed)),
		snapshots:  map[key]*snapshot{},
		operations: map[key]*operation{},
		requests:   map[key]*operation{},
		pending:    map[*operation]bool{},
		failNext:   map[key]*fault{},
		inUse:      map[key]int{},
		opFaults:   map[key]opFault{},
		slowOps:    map[key]time.Duration{},
		deleteCall: map[key]int{},
		deleted:    map[key]int{},
		deletedAt:  map[key]time.Time{},
		stats: Stats{ByStatus: map[int]int{}, ByMethod: map[string]int{},
			QuotaErrorsByProject: map[string]int{}, QuotaErrorsByProjectMinute: map[string]map[string]int{},
			QuotaErrorsByCaller: map[string]map[string]map[string]int{}},
		quotaDefault:   map[string]int{},
		quotaByProject: map[quotaKey]int{},
		windows:        map[quotaKey]window{},
		quotaRejected:  map[key]int{},
		seen:           map[string]map[string]bool{},
		inUseEvery:     opts.InUseEvery,
		inUseTimes:     opts.InUseTimes,
	}
	for g, n := range opts.Quota {
		if validGroup(g) && n > 0 {
			f.quotaDefault[g] = n
		}
	}
	if f.now == nil {
		f.now = time.Now
	}
	const base = "/compute/v1/projects/{project}/global/"
	f.mux = http.NewServeMux()
	f.mux.HandleFunc("GET "+base+"snapshots/{name}", f.serve("snapshots.get", f.getSnapshot))
	f.mux.HandleFunc("DELETE "+base+"snapshots/{name}", f.serve("snapshots.delete", f.deleteSnapshot))
	f.mux.HandleFunc("GET "+base+"snapshots", f.serve("snapshots.list", f.listSnapshots))
	f.mux.HandleFunc("GET "+base+"operations/{name}", f.serve("globalOperations.get", f.getOperation))
	f.mux.HandleFunc("POST "+base+"operations/{name}/wait", f.waitOperation)
	f.mux.HandleFunc("POST /batch/compute/v1", f.serveBatch)
	// Anything else is a bug in the caller or a gap in the fake. Say so with a 400, never a
	// 404, which a delete would take for "already gone".
	f.mux.HandleFunc("/", f.serve("unsupported", func(r *http.Request, c *Call) response {
		return errorResponse(http.StatusBadRequest, "invalid", fmt.Sprintf("gcefake: unsupported request %s %s", r.Method, r.URL.Path))
	}))
	return f
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d := f.opts.CallLatency; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	f.mux.ServeHTTP(w, r)
}

type response struct {
	status int
	body   []byte
	quota  bool // the answer says "rate limited"
}

// serve runs h under the lock, logs the call and writes the answer after unlocking, so a
// slow client does not hold up everyone else.
func (f *Fake) serve(method string, h func(r *http.Request, c *Call) response) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		c := Call{Method: method, Project: r.PathValue("project"), Name: r.PathValue("name"), Time: f.now(), Caller: callerOf(r.Context())}
		f.settleLocked(c.Time)
		resp := h(r, &c)
		f.logLocked(c, resp)
		f.mu.Unlock()
		write(w, resp)
	}
}

func write(w http.ResponseWriter, resp response) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(resp.status)
	w.Write(resp.body)
}

func (f *Fake) logLocked(c Call, resp response) {
	c.Status = resp.status
	f.calls = append(f.calls, c)
	f.stats.Calls++
	f.stats.ByStatus[resp.status]++
	f.stats.ByMethod[c.Method]++
	k := key{c.Project, c.Name}
	if c.Method == "snapshots.delete" {
		f.deleteCall[k]++
		f.rememberLocked(k)
	}
	if resp.quota {
		f.stats.QuotaErrors++
		f.stats.QuotaErrorsByProject[c.Project]++
		byMinute := f.stats.QuotaErrorsByProjectMinute[c.Project]
		if byMinute == nil {
			byMinute = map[string]int{}
			f.stats.QuotaErrorsByProjectMinute[c.Project] = byMinute
		}
		byMinute[minuteLabel(c.Time)]++
		if c.Caller != "" {
			byProject := f.stats.QuotaErrorsByCaller[c.Caller]
			if byProject == nil {
				byProject = map[string]map[string]int{}
				f.stats.QuotaErrorsByCaller[c.Caller] = byProject
			}
			if byProject[c.Project] == nil {
				byProject[c.Project] = map[string]int{}
			}
			byProject[c.Project][minuteLabel(c.Time)]++
		}
		if c.Method == "snapshots.delete" {
			f.quotaRejected[k]++
		}
	}
}

// rememberLocked notes a snapshot name, so that Facts can tell what became of it.
func (f *Fake) rememberLocked(k key) {
	if f.seen[k.project] == nil {
		f.seen[k.project] = map[string]bool{}
	}
	f.seen[k.project][k.name] = true
}

// faultLocked decides whether an injected fault or a rate quota answers this call instead
// of the API. target is nil for calls that touch no single snapshot.
func (f *Fake) faultLocked(c *Call, target *key) *response {
	if f.outage {
		r := errorResponse(http.StatusServiceUnavailable, "backendError", "Backend Error")
		return &r
	}
	if f.quotaLocked(c) {
		// Compute's answer to a spent rate quota: 403 with the legacy reason
		// rateLimitExceeded in the usageLimits domain (Compute API reference, "Handling API
		// errors"; gce.Classify takes it for ClassRateLimited).
		r := errorResponse(http.StatusForbidden, "rateLimitExceeded",
			fmt.Sprintf("Quota exceeded for quota group '%s' of service 'compute.googleapis.com' for consumer 'project:%s' (limit per minute).",
				groupOf(c.Method), c.Project))
		return &r
	}
	if target != nil {
		if fn := f.failNext[*target]; fn != nil && fn.n > 0 {
			fn.n--
			r := errorResponse(fn.code, fn.reason, "gcefake: injected failure")
			return &r
		}
	}
	if fr := f.failRate; fr.p > 0 && f.rnd.Float64() < fr.p {
		r := errorResponse(fr.code, fr.reason, "gcefake: injected random failure")
		return &r
	}
	return nil
}

func (f *Fake) getSnapshot(r *http.Request, c *Call) response {
	k := key{c.Project, c.Name}
	if resp := f.faultLocked(c, &k); resp != nil {
		return *resp
	}
	s := f.snapshots[k]
	if s == nil {
		return notFound("projects/" + c.Project + "/global/snapshots/" + c.Name)
	}
	return jsonResponse(f.snapshotProto(s))
}

func (f *Fake) deleteSnapshot(r *http.Request, c *Call) response {
	k := key{c.Project, c.Name}
	c.RequestID = r.URL.Query().Get("requestId")
	if c.RequestID != "" {
		// Compute accepts only a canonical, non-zero UUID.
		if id, err := uuid.Parse(c.RequestID); err != nil || len(c.RequestID) != 36 || id == uuid.Nil {
			return errorResponse(http.StatusBadRequest, "invalid",
				fmt.Sprintf("Invalid value for field 'requestId': '%s'. The requestId must be a valid UUID.", c.RequestID))
		}
	}
	if resp := f.faultLocked(c, &k); resp != nil {
		return *resp
	}
	if c.RequestID != "" {
		// A request id Compute has seen before is not executed again: the answer is the
		// first request's operation, whatever happened since.
		if op := f.requests[key{c.Project, c.RequestID}]; op != nil {
			return jsonResponse(f.operationProto(op, c.Time))
		}
	}
	s := f.snapshots[k]
	if s == nil {
		return notFound("projects/" + c.Project + "/global/snapshots/" + c.Name)
	}
	if f.inUse[k] > 0 {
		f.inUse[k]--
		return errorResponse(http.StatusBadRequest, "resourceInUseByAnotherResource",
			fmt.Sprintf("The snapshot resource 'projects/%s/global/snapshots/%s' is already being used by 'projects/%s/global/images/image-from-%s'", c.Project, c.Name, c.Project, c.Name))
	}
	if s.Status != "READY" {
		return errorResponse(http.StatusBadRequest, "resourceNotReady",
			fmt.Sprintf("The resource 'projects/%s/global/snapshots/%s' is not ready", c.Project, c.Name))
	}

	f.nextID++
	op := &operation{
		project:  c.Project,
		name:     fmt.Sprintf("operation-%d-%08x", c.Time.UnixMilli(), f.nextID),
		id:       f.nextID,
		target:   k,
		targetID: s.id,
		inserted: c.Time,
		doneAt:   c.Time.Add(f.opts.Latency),
	}
	op.reportAt = op.doneAt
	if d := f.slowOps[k]; d > 0 && c.Time.Add(d).After(op.reportAt) {
		op.reportAt = c.Time.Add(d)
	}
	if of, ok := f.opFaults[k]; ok {
		op.fault = &of
	}
	s.Status, s.deleting = "DELETING", op
	f.operations[key{c.Project, op.name}] = op
	if c.RequestID != "" {
		f.requests[key{c.Project, c.RequestID}] = op
	}
	f.pending[op] = true
	f.settleLocked(c.Time)
	return jsonResponse(f.operationProto(op, c.Time))
}

// maxPage is the largest page Compute returns.
const maxPage = 500

func (f *Fake) listSnapshots(r *http.Request, c *Call) response {
	if resp := f.faultLocked(c, nil); resp != nil {
		return *resp
	}
	q := r.URL.Query()
	match, err := parseFilter(q.Get("filter"))
	if err != nil {
		return errorResponse(http.StatusBadRequest, "invalid", err.Error())
	}
	if q.Get("orderBy") != "" {
		return errorResponse(http.StatusBadRequest, "invalid", "gcefake: orderBy is not supported")
	}
	size := maxPage
	if v := q.Get("maxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxPage {
			return errorResponse(http.StatusBadRequest, "invalid",
				fmt.Sprintf("Invalid value for field 'maxResults': '%s'. Must be between 0 and 500.", v))
		}
		if n > 0 {
			size = n
		}
	}
	// The page token is the last name of the previous page, so snapshots deleted or added
	// between pages neither shift nor repeat the ones after it.
	var after string
	if t := q.Get("pageToken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		if err != nil {
			return errorResponse(http.StatusBadRequest, "invalid", "Invalid value for field 'pageToken'.")
		}
		after = string(b)
	}

	var names []string
	for k, s := range f.snapshots {
		if k.project == c.Project && k.name > after && match(s) {
			names = append(names, k.name)
		}
	}
	slices.Sort(names)
	list := &computepb.SnapshotList{
		Kind:     proto.String("compute#snapshotList"),
		Id:       proto.String("projects/" + c.Project + "/global/snapshots"),
		SelfLink: proto.String(selfLink(c.Project, "snapshots", "")),
	}
	if len(names) > size {
		names = names[:size]
		list.NextPageToken = proto.String(base64.RawURLEncoding.EncodeToString([]byte(names[size-1])))
	}
	for _, n := range names {
		list.Items = append(list.Items, f.snapshotProto(f.snapshots[key{c.Project, n}]))
	}
	return jsonResponse(list)
}

// A filter term: "labels.KEY:*" (the key is set) or labels.KEY = "VALUE" (quotes optional).
// That is what snapsweep sends; anything else gets a 400 so that a new query shape is
// noticed rather than silently matching everything.
var filterRE = regexp.MustCompile(`^labels\.([a-z][a-z0-9_-]{0,62})\s*(?::\s*\*|=\s*"?([a-z0-9_-]{0,63})"?)$`)

func parseFilter(filter string) (func(*snapshot) bool, error) {
	filter = strings.TrimSpace(filter)
	if filter == "" {
		return func(*snapshot) bool { return true }, nil
	}
	m := filterRE.FindStringSubmatch(filter)
	if m == nil {
		return nil, fmt.Errorf("Invalid value for field 'filter': '%s'. gcefake supports only labels.KEY:* and labels.KEY = VALUE.", filter)
	}
	labelKey, value, exists := m[1], m[2], strings.Contains(filter, ":")
	return func(s *snapshot) bool {
		v, ok := s.Labels[labelKey]
		return ok && (exists || v == value)
	}, nil
}

func (f *Fake) getOperation(r *http.Request, c *Call) response {
	if resp := f.faultLocked(c, nil); resp != nil {
		return *resp
	}
	op := f.operations[key{c.Project, c.Name}]
	if op == nil {
		return notFound("projects/" + c.Project + "/global/operations/" + c.Name)
	}
	return jsonResponse(f.operationProto(op, c.Time))
}

// maxWait is how long Compute's operations.wait blocks before answering with a running
// operation.
const maxWait = 2 * time.Minute

// waitOperation serves globalOperations.wait: it answers when the operation is DONE, after
// maxWait, or when the client gives up. It cannot hold the lock while it waits, so it does
// not go through serve.
func (f *Fake) waitOperation(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	for first := true; ; first = false {
		f.mu.Lock()
		c := Call{Method: "globalOperations.wait", Project: r.PathValue("project"), Name: r.PathValue("name"), Time: f.now()}
		f.settleLocked(c.Time)
		var resp *response
		if first {
			// Faults apply to the call, not to every look at the operation.
			resp = f.faultLocked(&c, nil)
		}
		if resp == nil {
			op := f.operations[key{c.Project, c.Name}]
			switch {
			case op == nil:
				nf := notFound("projects/" + c.Project + "/global/operations/" + c.Name)
				resp = &nf
			case op.done || time.Since(start) >= maxWait:
				ok := jsonResponse(f.operationProto(op, c.Time))
				resp = &ok
			}
		}
		if resp != nil {
			f.logLocked(c, *resp)
			f.mu.Unlock()
			write(w, *resp)
			return
		}
		f.mu.Unlock()

		t := time.NewTimer(5 * time.Millisecond)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
}

// settleLocked finishes the operations whose time has come. Operations finish lazily, when
// someone looks, so the fake needs no goroutines and follows an injected clock exactly. A
// slow operation (SlowOperations) acts on its snapshot at doneAt and reports DONE later.
func (f *Fake) settleLocked(now time.Time) {
	for op := range f.pending {
		if now.Before(op.doneAt) {
			continue
		}
		if !now.Before(op.reportAt) {
			op.done = true
			delete(f.pending, op)
		}
		if op.settled {
			continue
		}
		op.settled = true
		s := f.snapshots[op.target]
		if s == nil || s.deleting != op {
			// Re-added or replaced meanwhile: the operation no longer owns it.
			continue
		}
		if op.fault != nil {
			s.Status, s.deleting = "READY", nil
			continue
		}
		delete(f.snapshots, op.target)
		f.deleted[op.target]++
		f.deletedAt[op.target] = op.doneAt
		f.stats.Deleted++
	}
}

// AddSnapshot creates a READY snapshot, or replaces an existing one, with the given labels
// and the current time (of the Now clock) as creation time. Every call assigns a new id, as
// Compute does for a snapshot created under a name that was used before; it returns the id.
func (f *Fake) AddSnapshot(project, name string, labels map[string]string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	k := key{project, name}
	f.rememberLocked(k)
	f.added++
	if f.inUseEvery > 0 && f.inUseTimes > 0 && f.added%f.inUseEvery == 0 {
		f.inUse[k] = f.inUseTimes
	}
	f.snapshots[k] = &snapshot{
		id: f.nextID,
		Snapshot: Snapshot{
			ID:           f.nextID,
			Project:      project,
			Name:         name,
			Labels:       maps.Clone(labels),
			Status:       "READY",
			CreationTime: f.now(),
			SourceDisk:   fmt.Sprintf("https://www.googleapis.com/compute/v1/projects/%s/zones/us-central1-a/disks/disk-%s", project, name),
			Size:         DefaultSize(f.nextID),
		},
	}
	return f.nextID
}

// DefaultSize is the size AddSnapshot gives the snapshot with id: realistic and
// deterministic. Disks of 10 to 500 GB; a snapshot stores 5% to 60% of its disk (a first,
// full snapshot of a mostly empty disk, or an incremental one), so storageBytes is never a
// multiple of diskSizeGb; every fifth snapshot is ARCHIVE; every other one is stored in the
// us multi-region, the others in us-central1.
func DefaultSize(id uint64) Size {
	disks := []int64{10, 50, 100, 200, 500}
	disk := disks[id%uint64(len(disks))]
	share := 5 + (id*37)%56 // percent
	sz := Size{
		DiskSizeGb:   disk,
		StorageBytes: disk<<30*int64(share)/100 + int64(id%4096)*4096,
		Locations:    []string{"us"},
		SnapshotType: "STANDARD",
	}
	if id%2 == 0 {
		sz.Locations = []string{"us-central1"}
	}
	if id%5 == 0 {
		sz.SnapshotType = "ARCHIVE"
	}
	return sz
}

// SetSize replaces what the fake reports about a snapshot's storage; it reports false if
// there is no such snapshot. An empty Status keeps the automatic UPDATING period.
func (f *Fake) SetSize(project, name string, sz Size) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snapshots[key{project, name}]
	if s == nil {
		return false
	}
	sz.Locations = slices.Clone(sz.Locations)
	s.Size = sz
	return true
}

// sizeLocked is the size a snapshot reports now.
func (f *Fake) sizeLocked(s *snapshot) (bytes int64, status string) {
	sz := s.Size
	status = sz.Status
	if status == "" {
		status = "UP_TO_DATE"
		window := f.opts.SizingTime
		if window == 0 {
			window = time.Minute
		}
		if window > 0 && f.now().Before(s.CreationTime.Add(window)) {
			status = "UPDATING"
		}
	}
	bytes = sz.StorageBytes
	if status == "UPDATING" {
		bytes /= 2
	}
	return bytes, status
}

// SetLabels replaces the labels of a snapshot; it reports false if there is no such
// snapshot.
func (f *Fake) SetLabels(project, name string, labels map[string]string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.snapshots[key{project, name}]
	if s == nil {
		return false
	}
	s.Labels = maps.Clone(labels)
	return true
}

// Snapshot returns a copy of a stored snapshot.
func (f *Fake) Snapshot(project, name string) (Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settleLocked(f.now())
	s := f.snapshots[key{project, name}]
	if s == nil {
		return Snapshot{}, false
	}
	cp := s.Snapshot
	cp.Labels = maps.Clone(s.Labels)
	cp.Size.Locations = slices.Clone(s.Size.Locations)
	return cp, true
}

// Exists reports whether the snapshot exists (a DELETING snapshot still exists).
func (f *Fake) Exists(project, name string) bool {
	_, ok := f.Snapshot(project, name)
	return ok
}

// SetFailureRate makes a random share p of all calls fail with code and reason; p = 0 turns
// it off. It replaces an earlier setting. An empty reason is the usual one for the code
// (DefaultReason).
func (f *Fake) SetFailureRate(code int, reason string, p float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if reason == "" {
		reason = DefaultReason(code)
	}
	f.failRate = fault{p: p, code: code, reason: reason}
}

// FailureRate is the random fault injection in effect (SetFailureRate).
type FailureRate struct {
	Rate   float64
	Code   int
	Reason string
}

// FailureRate returns the random fault injection in effect.
func (f *Fake) FailureRate() FailureRate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FailureRate{Rate: f.failRate.p, Code: f.failRate.code, Reason: f.failRate.reason}
}

// SetInUseEvery makes every every-th snapshot added from now on in use for its first times
// deletes (Options.InUseEvery); every 0 turns it off.
func (f *Fake) SetInUseEvery(every, times int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUseEvery, f.inUseTimes = every, times
}

// SlowOperations makes the delete operations of a snapshot report RUNNING until d after
// the delete call (by the Now clock), while the snapshot itself goes at Options.Latency: a
// delete Compute has done but whose operation a caller cannot see finish in time. d = 0
// turns it off; it applies to later deletes.
func (f *Fake) SlowOperations(project, name string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key{project, name}
	if d <= 0 {
		delete(f.slowOps, k)
		return
	}
	f.slowOps[k] = d
}

// FailNext makes the next n get or delete calls of the snapshot fail with code and reason.
//
// A reason in UPPER_SNAKE_CASE (e.g. CONCURRENT_OPERATIONS_QUOTA_EXCEEDED) is sent the way
// Compute sends those: as an ErrorInfo in "details", next to a legacy error item.
func (f *Fake) FailNext(project, name string, n, code int, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[key{project, name}] = &fault{n: n, code: code, reason: reason}
}

// InUse makes the next n deletes of the snapshot fail with 400
// resourceInUseByAnotherResource, as when an image was created from it.
func (f *Fake) InUse(project, name string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inUse[key{project, name}] = n
}

// Outage makes every call fail with 503 backendError while on.
func (f *Fake) Outage(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.outage = on
}

// FailOperation makes every later delete of the snapshot be accepted and then finish DONE
// with an error with the given code and reason (Compute uses UPPER_SNAKE_CASE codes here,
// e.g. RESOURCE_IN_USE_BY_ANOTHER_RESOURCE); the snapshot stays. With withHTTPStatus false
// the operation carries no httpErrorStatusCode, which the client library's Operation.Wait
// takes for success. code 0 turns it off.
func (f *Fake) FailOperation(project, name string, code int, reason string, withHTTPStatus bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key{project, name}
	if code == 0 {
		delete(f.opFaults, k)
		return
	}
	f.opFaults[k] = opFault{code: code, reason: reason, withHTTPStatus: withHTTPStatus}
}

// Calls returns a copy of the call log, oldest first.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// DeleteCalls returns how many delete calls named the snapshot, whatever their answer.
func (f *Fake) DeleteCalls(project, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deleteCall[key{project, name}]
}

// SuccessfulDeletes returns how many delete operations actually removed the snapshot. More
// than one means a snapshot was deleted twice, which only happens if it was re-added.
func (f *Fake) SuccessfulDeletes(project, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settleLocked(f.now())
	return f.deleted[key{project, name}]
}

// Stats returns totals of the calls so far.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settleLocked(f.now())
	st := f.stats
	st.ByStatus = maps.Clone(f.stats.ByStatus)
	st.ByMethod = maps.Clone(f.stats.ByMethod)
	st.QuotaErrorsByProject = maps.Clone(f.stats.QuotaErrorsByProject)
	st.QuotaErrorsByProjectMinute = map[string]map[string]int{}
	for p, m := range f.stats.QuotaErrorsByProjectMinute {
		st.QuotaErrorsByProjectMinute[p] = maps.Clone(m)
	}
	st.QuotaErrorsByCaller = map[string]map[string]map[string]int{}
	for c, byProject := range f.stats.QuotaErrorsByCaller {
		st.QuotaErrorsByCaller[c] = map[string]map[string]int{}
		for p, m := range byProject {
			st.QuotaErrorsByCaller[c][p] = maps.Clone(m)
		}
	}
	return st
}

// Facts is what became of one snapshot name (the admin endpoint GET /fake/snapshots; the
// chaos run judges its invariants on them).
type Facts struct {
	Name   string            `json:"name"`
	Exists bool              `json:"exists"`
	Status string            `json:"status,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	// DeleteCalls counts every delete call that named it, whatever the answer (quota
	// refusals included); SuccessfulDeletes counts the delete operations that removed it
	// (more than one means deleted twice); QuotaRejected the deletes answered "rate
	// limited".
	DeleteCalls       int `json:"deleteCalls"`
	SuccessfulDeletes int `json:"successfulDeletes"`
	QuotaRejected     int `json:"quotaRejected,omitempty"`
	// DeletedAt is when a delete operation last removed it (its doneAt by the Now clock:
	// operations settle lazily, so this is not the time someone looked).
	DeletedAt time.Time `json:"deletedAt,omitzero"`
}

// Facts returns the facts of every snapshot added to project or named by a delete call,
// by name.
func (f *Fake) Facts(project string) []Facts {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settleLocked(f.now())
	names := slices.Sorted(maps.Keys(f.seen[project]))
	out := make([]Facts, 0, len(names))
	for _, n := range names {
		k := key{project, n}
		fc := Facts{Name: n, DeleteCalls: f.deleteCall[k], SuccessfulDeletes: f.deleted[k], QuotaRejected: f.quotaRejected[k],
			DeletedAt: f.deletedAt[k]}
		if s := f.snapshots[k]; s != nil {
			fc.Exists, fc.Status, fc.Labels = true, s.Status, maps.Clone(s.Labels)
		}
		out = append(out, fc)
	}
	return out
}

// timeFormat is how Compute writes times: RFC 3339 with milliseconds and an offset.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

func selfLink(project, collection, name string) string {
	s := "https://www.googleapis.com/compute/v1/projects/" + project + "/global/" + collection
	if name != "" {
		s += "/" + name
	}
	return s
}

func (f *Fake) snapshotProto(s *snapshot) *computepb.Snapshot {
	bytes, status := f.sizeLocked(s)
	p := &computepb.Snapshot{
		Kind:               proto.String("compute#snapshot"),
		Id:                 proto.Uint64(s.id),
		Name:               proto.String(s.Name),
		Labels:             maps.Clone(s.Labels),
		LabelFingerprint:   proto.String(labelFingerprint(s.Labels)),
		Status:             proto.String(s.Status),
		CreationTimestamp:  proto.String(s.CreationTime.Format(timeFormat)),
		SourceDisk:         proto.String(s.SourceDisk),
		DiskSizeGb:         proto.Int64(s.Size.DiskSizeGb),
		StorageBytes:       proto.Int64(bytes),
		StorageBytesStatus: proto.String(status),
		StorageLocations:   slices.Clone(s.Size.Locations),
		SelfLink:           proto.String(selfLink(s.Project, "snapshots", s.Name)),
	}
	if s.Size.SnapshotType != "" {
		p.SnapshotType = proto.String(s.Size.SnapshotType)
	}
	if s.Size.ChainName != "" {
		p.ChainName = proto.String(s.Size.ChainName)
	}
	return p
}

// labelFingerprint stands in for Compute's optimistic-locking fingerprint: it changes
// whenever the labels do.
func labelFingerprint(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s;", k, labels[k])
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil)[:8])
}

func (f *Fake) operationProto(op *operation, now time.Time) *computepb.Operation {
	p := &computepb.Operation{
		Kind:          proto.String("compute#operation"),
		Id:            proto.Uint64(op.id),
		Name:          proto.String(op.name),
		OperationType: proto.String("delete"),
		TargetLink:    proto.String(selfLink(op.project, "snapshots", op.target.name)),
		TargetId:      proto.Uint64(op.targetID),
		User:          proto.String("snapsweep@gcefake.iam.gserviceaccount.com"),
		InsertTime:    proto.String(op.inserted.Format(timeFormat)),
		StartTime:     proto.String(op.inserted.Format(timeFormat)),
		SelfLink:      proto.String(selfLink(op.project, "operations", op.name)),
		Status:        computepb.Operation_RUNNING.Enum(),
		Progress:      proto.Int32(0),
	}
	if !op.done {
		return p
	}
	p.Status = computepb.Operation_DONE.Enum()
	p.Progress = proto.Int32(100)
	p.EndTime = proto.String(op.doneAt.Format(timeFormat))
	if of := op.fault; of != nil {
		item := &computepb.Errors{
			Code:    proto.String(of.reason),
			Message: proto.String(fmt.Sprintf("gcefake: injected operation failure for 'projects/%s/global/snapshots/%s'", op.project, op.target.name)),
		}
		p.Error = &computepb.Error{Errors: []*computepb.Errors{item}}
		if of.withHTTPStatus {
			p.HttpErrorStatusCode = proto.Int32(int32(of.code))
			p.HttpErrorMessage = proto.String(strings.ToUpper(http.StatusText(of.code)))
		}
	}
	return p
}

func jsonResponse(m proto.Message) response {
	// protojson writes the proto json_name of each field (creationTimestamp, nextPageToken,
	// httpErrorStatusCode), which is what the REST client decodes.
	b, err := protojson.Marshal(m)
	if err != nil {
		return response{status: http.StatusInternalServerError, body: []byte(`{"error":{"code":500,"message":"gcefake: marshal"}}`)}
	}
	return response{status: http.StatusOK, body: b}
}

func notFound(resource string) response {
	return errorResponse(http.StatusNotFound, "notFound", fmt.Sprintf("The resource '%s' was not found", resource))
}

// DefaultReason is the reason the fake sends with an error code when no reason is given:
// the generic reason of Google's JSON error format for the code. A 403 is "forbidden" (a
// permission error, ClassPermanent); a spent quota says rateLimitExceeded explicitly.
func DefaultReason(code int) string { return genericReason(code) }

// rateReasons are the reasons that mean "rate limited"; they are counted in Stats and sent
// in the usageLimits domain, as Compute does.
var rateReasons = map[string]bool{
	"rateLimitExceeded":                    true,
	"userRateLimitExceeded":                true,
	"quotaExceeded":                        true,
	"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED": true,
}

var upperSnake = regexp.MustCompile(`^[A-Z][A-Z0-9_]*$`)

// errorResponse builds an error in Google's JSON error format, e.g.
//
//	{"error":{"code":404,"message":"…","errors":[{"domain":"global","reason":"notFound","message":"…"}]}}
//
// An UPPER_SNAKE_CASE reason is an ErrorInfo reason: it goes into "details", and the legacy
// item gets the reason Compute pairs with it.
func errorResponse(code int, reason, message string) response {
	quota := code == http.StatusTooManyRequests || rateReasons[reason]
	type item struct {
		Domain  string `json:"domain"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
	body := struct {
		Code    int              `json:"code"`
		Message string           `json:"message"`
		Errors  []item           `json:"errors"`
		Details []map[string]any `json:"details,omitempty"`
	}{Code: code, Message: message}

	legacy := reason
	if upperSnake.MatchString(reason) {
		body.Details = []map[string]any{{
			"@type":  "type.googleapis.com/google.rpc.ErrorInfo",
			"reason": reason,
			"domain": "compute.googleapis.com",
		}}
		legacy = genericReason(code)
		if rateReasons[reason] {
			legacy = "rateLimitExceeded"
		}
	}
	if legacy == "" {
		legacy = genericReason(code)
	}
	domain := "global"
	if rateReasons[legacy] {
		domain = "usageLimits"
	}
	body.Errors = []item{{Domain: domain, Reason: legacy, Message: message}}

	b, _ := json.Marshal(map[string]any{"error": body})
	return response{status: code, body: b, quota: quota}
}

func genericReason(code int) string {
	switch code {
	case http.StatusBadRequest:
		return "badRequest"
	case http.StatusForbidden:
		return "forbidden"
	case http.StatusNotFound:
		return "notFound"
	case http.StatusConflict:
		return "conflict"
	case http.StatusTooManyRequests:
		return "rateLimitExceeded"
	case http.StatusServiceUnavailable, http.StatusInternalServerError:
		return "backendError"
	default:
		return "unknown"
	}
}

// Client returns an HTTP client that serves every request from f in this process, without
// a listener: tests pass it to the real Compute client (option.WithHTTPClient) with any
// endpoint URL.
func (f *Fake) Client() *http.Client { return &http.Client{Transport: InProcess(f)} }

// InProcess is an http.RoundTripper that answers every request from h in this process (the
// fake, a handler wrapping it, or a service handler that a local run pushes to).
func InProcess(h http.Handler) http.RoundTripper { return inProcess{h} }

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}
