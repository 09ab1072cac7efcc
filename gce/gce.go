// Package gce is snapsweep's adapter to the Compute Engine API: it reads, lists and deletes
// snapshots and waits for delete operations, through the official REST client, and turns
// every failure into an *Error with a Class so that the rest of snapsweep decides on retries
// without looking at HTTP codes.
//
// The adapter makes one attempt per call (list pages excepted, see ListByLabel): retries,
// backoff, rate limiting and circuit breaking belong to the caller, which sees the class.
//
// It must not decide whether a snapshot may be deleted: the ownership and
// identity checks are lifecycle's, run by the cleanup engine before it calls
// Delete.
package gce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	compute "cloud.google.com/go/compute/apiv1"
	"cloud.google.com/go/compute/apiv1/computepb"
	"github.com/google/uuid"
	"github.com/googleapis/gax-go/v2"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/store"
)

// Config configures the Compute client.
type Config struct {
	// Endpoint is the base URL of the Compute API, e.g. "http://127.0.0.1:8089" for a local
	// fake. Empty means the production endpoint with Application Default Credentials. A
	// plain-http endpoint is used without credentials, so that local runs need no login.
	Endpoint string `env:"SNAPSWEEP_COMPUTE_ENDPOINT"`
}

// NoCredentials reports whether the Compute API at endpoint is called
// without credentials: a plain-http endpoint (a local fake) is, anything
// else uses Application Default Credentials. The one place that decides.
func NoCredentials(endpoint string) bool { return strings.HasPrefix(endpoint, "http://") }

// Snapshot is what snapsweep needs to know about a Compute Engine snapshot.
type Snapshot struct {
	Project string
	Name    string
	// Labels are the snapshot's labels; snapsweep's ownership check reads its session label.
	Labels map[string]string
	// Status is READY, CREATING, DELETING, UPLOADING or FAILED.
	Status string
	// CreationTime is zero when the API did not report a parseable time; callers must treat
	// zero as unknown, not as very old.
	CreationTime time.Time
	// SourceDisk is the URL of the disk the snapshot was taken from, if any.
	SourceDisk string
	// ID is Compute's numeric id in decimal, empty when the API did not send one. A name can
	// be reused after a deletion; the id tells the two snapshots apart.
	ID string
	// StorageBytes is what Compute bills the snapshot for: its own share of the stored data
	// (a snapshot is incremental, so this is less than the disk's size; and when an earlier
	// snapshot of the chain is deleted, the data this one still needs moves into it and this
	// grows). It is final only while StorageBytesStatus is UP_TO_DATE; while UPDATING it is
	// still being computed.
	StorageBytes       int64
	StorageBytesStatus string
	// DiskSizeGb is the size of the source disk in GiB (not what the snapshot stores).
	DiskSizeGb int64
	// StorageLocations are the Cloud Storage locations holding the snapshot: one multi-region
	// (us, eu, asia) or one region (us-central1, ...).
	StorageLocations []string
	// SnapshotType is STANDARD or ARCHIVE (empty when the API did not say: STANDARD).
	SnapshotType string
	// ChainName is the name of the snapshot chain it was created in, if any.
	ChainName string
}

// Size is the snapshot's storage as the registry records it, read at readAt.
func (s Snapshot) Size(readAt time.Time) *store.Size {
	t := s.SnapshotType
	if t == "" {
		t = "STANDARD"
	}
	return &store.Size{StorageBytes: s.StorageBytes, Status: s.StorageBytesStatus, DiskSizeGb: s.DiskSizeGb,
		Locations: slices.Clone(s.StorageLocations), Type: t, Chain: s.ChainName, ReadAt: readAt.UTC().Truncate(time.Microsecond)}
}

// Client talks to the Compute Engine API. It is safe for concurrent use.
type Client struct {
	snapshots  *compute.SnapshotsClient
	operations *compute.GlobalOperationsClient
	now        func() time.Time
}

// New builds a Client. Extra options are appended after the ones derived from cfg, so a test
// can pass option.WithHTTPClient.
func New(ctx context.Context, cfg Config, opts ...option.ClientOption) (*Client, error) {
	var all []option.ClientOption
	if cfg.Endpoint != "" {
		// The REST client appends "/compute/v1/..." to the endpoint; a trailing slash would
		// produce "//compute" paths.
		all = append(all, option.WithEndpoint(strings.TrimRight(cfg.Endpoint, "/")))
		if NoCredentials(cfg.Endpoint) {
			all = append(all, option.WithoutAuthentication())
		}
	}
	all = append(all, opts...)

	snapshots, err := compute.NewSnapshotsRESTClient(ctx, all...)
	if err != nil {
		return nil, fmt.Errorf("create compute snapshots client: %w", err)
	}
	operations, err := compute.NewGlobalOperationsRESTClient(ctx, all...)
	if err != nil {
		snapshots.Close()
		return nil, fmt.Errorf("create compute operations client: %w", err)
	}
	return &Client{snapshots: snapshots, operations: operations, now: time.Now}, nil
}

// Close releases the clients' connections.
func (c *Client) Close() error {
	return errors.Join(c.snapshots.Close(), c.operations.Close())
}

// noRetry turns off the library's own retries. The generated defaults retry Get and List on
// 503/504 with backoff up to a minute for up to ten minutes, which would hide an outage from
// the caller's circuit breaker and blow through its deadlines.
var noRetry = gax.WithRetry(nil)

// pageRetry retries a list page a few times on 503/504. A listing is many calls, and one
// transient failure would otherwise throw away every page already read.
var pageRetry = gax.WithRetry(func() gax.Retryer {
	return &boundedRetryer{
		left: 3,
		next: gax.OnHTTPCodes(gax.Backoff{Initial: 200 * time.Millisecond, Max: 2 * time.Second, Multiplier: 2},
			http.StatusServiceUnavailable, http.StatusGatewayTimeout),
	}
})

type boundedRetryer struct {
	left int
	next gax.Retryer
}

func (r *boundedRetryer) Retry(err error) (time.Duration, bool) {
	if r.left <= 0 {
		return 0, false
	}
	r.left--
	return r.next.Retry(err)
}

// Get reads one snapshot.
func (c *Client) Get(ctx context.Context, project, name string) (Snapshot, error) {
	if err := c.checkNames("get snapshot", project, name, resourceRE); err != nil {
		return Snapshot{}, err
	}
	s, err := c.snapshots.Get(ctx, &computepb.GetSnapshotRequest{Project: project, Snapshot: name}, noRetry)
	if err != nil {
		return Snapshot{}, newError("get snapshot", project, name, err, c.now())
	}
	return fromProto(project, s), nil
}

// labelKeyRE is the syntax of a GCE label key. Checking it keeps the key from changing the
// meaning of the list filter it is pasted into.
var labelKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)

// listPageSize is the largest page Compute returns.
const listPageSize = 500

// ListByLabel calls fn for every snapshot of project that has the label labelKey, whatever
// its value, reading all pages. It stops at the first error of fn and returns that error
// unchanged.
//
// The generated client does not attach ctx to list requests (only to the retry sleeps), so a
// list page that hangs is not cut off by ctx; ctx is checked between snapshots.
func (c *Client) ListByLabel(ctx context.Context, project, labelKey string, fn func(Snapshot) error) error {
	if err := c.checkNames("list snapshots", project, "", resourceRE); err != nil {
		return err
	}
	if !labelKeyRE.MatchString(labelKey) {
		return newError("list snapshots", project, "", fmt.Errorf("invalid label key %q", labelKey), c.now())
	}
	req := &computepb.ListSnapshotsRequest{
		Project: project,
		// ":*" tests that the key is defined (Compute list filter syntax).
		Filter:     new("labels." + labelKey + ":*"),
		MaxResults: new(uint32(listPageSize)),
	}
	it := c.snapshots.List(ctx, req, pageRetry)
	for {
		if err := ctx.Err(); err != nil {
			return newError("list snapshots", project, "", err, c.now())
		}
		s, err := it.Next()
		if errors.Is(err, iterator.Done) {
			return nil
		}
		if err != nil {
			return newError("list snapshots", project, "", err, c.now())
		}
		if err := fn(fromProto(project, s)); err != nil {
			return err
		}
	}
}

// Delete starts deleting a snapshot and returns the name of its operation without waiting
// for it. requestID must be a UUID (see RequestID): Compute executes a request id only once,
// so a retry after a lost answer returns the first call's operation instead of failing or
// deleting twice.
//
// If the answer already reports the operation finished with an error, Delete returns the
// operation name together with that classified error.
func (c *Client) Delete(ctx context.Context, project, name, requestID string) (string, error) {
	if err := c.checkNames("delete snapshot", project, name, resourceRE); err != nil {
		return "", err
	}
	if id, err := uuid.Parse(requestID); err != nil || len(requestID) != 36 || id == uuid.Nil {
		// Compute requires a valid UUID other than the zero UUID and answers anything else
		// with a 400; failing here saves the call and says why. The canonical form is
		// insisted on because it is the only one Compute documents.
		return "", newError("delete snapshot", project, name, fmt.Errorf("request id %q is not a non-zero canonical UUID", requestID), c.now())
	}
	op, err := c.snapshots.Delete(ctx, &computepb.DeleteSnapshotRequest{
		Project:   project,
		Snapshot:  name,
		RequestId: &requestID,
	})
	if err != nil {
		return "", newError("delete snapshot", project, name, err, c.now())
	}
	if op.Done() {
		if err := operationFailure(op.Proto()); err != nil {
			return op.Name(), newError("delete snapshot", project, name, err, c.now())
		}
	}
	return op.Name(), nil
}

// Poll intervals of WaitOperation: short first, because snapshot deletes usually finish in
// seconds, growing so that a slow operation does not cost a call every few hundred ms.
const (
	firstPoll = 100 * time.Millisecond
	maxPoll   = 2 * time.Second
)

// WaitOperation polls a global operation until it is DONE, maxWait has passed or ctx ends.
// It returns done=false and a nil error when the operation is still running after maxWait
// (at once if maxWait <= 0); the caller decides whether to wait more. For a DONE operation it returns done=true and, if
// the operation failed, a classified error.
//
// It polls with GlobalOperations.Get rather than Operation.Wait because Wait returns nil for
// an operation that is DONE with an error but without httpErrorStatusCode, and it has no
// bound of its own.
func (c *Client) WaitOperation(ctx context.Context, project, opName string, maxWait time.Duration) (bool, error) {
	if err := c.checkNames("wait operation", project, opName, opNameRE); err != nil {
		return false, err
	}
	waitCtx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()

	interval := firstPoll
	for {
		op, err := c.operations.Get(waitCtx, &computepb.GetGlobalOperationRequest{Project: project, Operation: opName}, noRetry)
		switch {
		case err == nil && op.GetStatus() == computepb.Operation_DONE:
			if err := operationFailure(op); err != nil {
				return true, newError("wait operation", project, opName, err, c.now())
			}
			return true, nil
		case err != nil && ctx.Err() == nil && waitCtx.Err() != nil:
			// Our own bound cut the poll short: not an error, just not done yet.
			return false, nil
		case err != nil:
			return false, newError("wait operation", project, opName, err, c.now())
		}

		t := time.NewTimer(interval)
		select {
		case <-t.C:
		case <-waitCtx.Done():
			t.Stop()
			if err := ctx.Err(); err != nil {
				return false, newError("wait operation", project, opName, err, c.now())
			}
			return false, nil
		}
		interval = min(interval*2, maxPoll)
	}
}

// operationFailure returns the error of a DONE operation, or nil if it succeeded.
func operationFailure(op *computepb.Operation) error {
	var reasons, messages []string
	for _, e := range op.GetError().GetErrors() {
		reasons = append(reasons, e.GetCode())
		for _, d := range e.GetErrorDetails() {
			if r := d.GetErrorInfo().GetReason(); r != "" {
				reasons = append(reasons, r)
			}
		}
		messages = append(messages, e.GetCode()+": "+e.GetMessage())
	}
	status := int(op.GetHttpErrorStatusCode())
	if status >= 200 && status <= 299 {
		status = 0
	}
	if len(reasons) == 0 && status == 0 {
		return nil
	}
	msg := strings.Join(messages, "; ")
	if msg == "" {
		msg = op.GetHttpErrorMessage()
	}
	return &operationError{operation: op.GetName(), httpStatus: status, reasons: reasons, message: msg}
}

// pingSnapshot is the snapshot Ping reads. It need not exist: "not found" proves as much as
// a snapshot would.
const pingSnapshot = "snapsweep-ping"

// Ping checks that the Compute API answers for project, with credentials and the permission
// to read snapshots, with one cheap call.
//
// It reads a snapshot instead of listing one because the generated client does not attach
// ctx to list requests (see ListByLabel): a list against a hanging API would hang the
// readiness probe, while a get gives up with ctx.
func (c *Client) Ping(ctx context.Context, project string) error {
	if err := c.checkNames("ping", project, "", resourceRE); err != nil {
		return err
	}
	_, err := c.snapshots.Get(ctx, &computepb.GetSnapshotRequest{Project: project, Snapshot: pingSnapshot}, noRetry)
	if err != nil && Classify(err) != ClassNotFound {
		return newError("ping", project, "", err, c.now())
	}
	return nil
}

// requestIDSpace is the UUIDv5 namespace of snapsweep's delete request ids, so they cannot
// collide with v5 ids another tool derives from the same names.
var requestIDSpace = uuid.NewSHA1(uuid.NameSpaceURL, []byte("https://github.com/snapsweep/snapsweep/gce/delete"))

// Resource names go into URL paths unescaped by the generated REST client,
// so a name like "../other-project/global/snapshots/x" would address another
// resource. Every call checks its names against Compute's own rules first.
var (
	projectRE  = regexp.MustCompile(`^(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	resourceRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)
	opNameRE   = regexp.MustCompile(`^[a-zA-Z0-9][-a-zA-Z0-9_]{0,127}$`)
)

// checkNames refuses a project or resource name that is not a plain Compute
// name, before any call is made.
func (c *Client) checkNames(op, project, name string, nameRE *regexp.Regexp) error {
	switch {
	case !projectRE.MatchString(project):
		return &Error{Class: ClassPermanent, Op: op, Project: project, Name: name, Err: fmt.Errorf("invalid project id %q", project)}
	case name != "" && !nameRE.MatchString(name):
		return &Error{Class: ClassPermanent, Op: op, Project: project, Name: name, Err: fmt.Errorf("invalid resource name %q", name)}
	}
	return nil
}

// RequestID returns the request id for delete attempt generation attempt of a snapshot. It
// is a UUIDv5 of project, name, the snapshot's Compute id and attempt, so every retry of one
// generation (e.g. after a timeout whose outcome is unknown) carries the same id and Compute
// runs the delete at most once; a new generation (after a delete that definitely failed) gets
// a new id, and so does another snapshot that reuses the name (a request id Compute still
// remembers for the old one would otherwise answer with the old, finished operation).
func RequestID(project, name, computeID string, attempt int) string {
	// "/" cannot occur in project ids, snapshot names or numeric ids, so the joined key is
	// unambiguous.
	return uuid.NewSHA1(requestIDSpace, []byte(project+"/"+name+"/"+computeID+"/"+strconv.Itoa(attempt))).String()
}

func fromProto(project string, s *computepb.Snapshot) Snapshot {
	// Compute writes RFC 3339 with fractional seconds and an offset, which time.RFC3339
	// parses.
	created, _ := time.Parse(time.RFC3339, s.GetCreationTimestamp())
	var id string
	if s.Id != nil {
		id = strconv.FormatUint(s.GetId(), 10)
	}
	return Snapshot{
		Project:      project,
		Name:         s.GetName(),
		Labels:       s.GetLabels(),
		Status:       s.GetStatus(),
		CreationTime: created,
		ID:           id,
		SourceDisk:   s.GetSourceDisk(),

		StorageBytes:       s.GetStorageBytes(),
		StorageBytesStatus: s.GetStorageBytesStatus(),
		DiskSizeGb:         s.GetDiskSizeGb(),
		StorageLocations:   s.GetStorageLocations(),
		SnapshotType:       s.GetSnapshotType(),
		ChainName:          s.GetChainName(),
	}
}
