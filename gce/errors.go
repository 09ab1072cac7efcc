package gce

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"
)

// Class says what a caller should do about a failed Compute call. It is the only thing the
// rest of snapsweep branches on; nobody outside this file looks at HTTP codes or reasons.
type Class string

const (
	// ClassNotFound means the snapshot (or operation) does not exist. For a delete this is
	// success: the snapshot is gone.
	ClassNotFound Class = "not_found"
	// ClassRateLimited means a Compute quota or rate limit said no. Retry after Error.RetryAfter,
	// and slow down.
	ClassRateLimited Class = "rate_limited"
	// ClassInUse means the snapshot is used by another resource (an image, a disk being created
	// from it) or is not ready (still CREATING or already DELETING). Retry later; retrying
	// soon will not help.
	ClassInUse Class = "in_use"
	// ClassTransient means a server error, a timeout or a broken connection. Retry with backoff.
	ClassTransient Class = "transient"
	// ClassPermanent means the request is wrong or not allowed (permission, invalid argument,
	// any other 4xx). Retrying the same request will fail the same way.
	ClassPermanent Class = "permanent"
)

// Error is the error every Client method returns, so that callers can errors.As it and read
// the class and the resource without parsing messages.
type Error struct {
	// Class is how the failure was classified.
	Class Class
	// Op is what the client was doing: "get snapshot", "list snapshots", "delete snapshot",
	// "wait operation", "ping".
	Op string
	// Project and Name name the resource; Name is the operation name for "wait operation"
	// and empty for calls that are about the whole project.
	Project, Name string
	// RetryAfter is the earliest time a retry is worth making; set only for
	// ClassRateLimited.
	RetryAfter time.Time
	// Err is the underlying error (an *apierror.APIError for API answers).
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	res := e.Project
	if e.Name != "" {
		res += "/" + e.Name
	}
	return fmt.Sprintf("gce: %s %s: %s: %v", e.Op, res, e.Class, e.Err)
}

// Unwrap returns the underlying error, so errors.Is(err, context.DeadlineExceeded) and
// errors.As(err, &apiErr) keep working through an *Error.
func (e *Error) Unwrap() error { return e.Err }

// newError classifies err once and wraps it with where it happened.
func newError(op, project, name string, err error, now time.Time) *Error {
	e := &Error{Class: Classify(err), Op: op, Project: project, Name: name, Err: err}
	if e.Class == ClassRateLimited {
		e.RetryAfter = RetryAt(now)
	}
	return e
}

// RetryAt returns when a rate-limited call is worth retrying: Compute API rate quotas are
// per minute and refill at the next whole minute, so retrying before that only burns more of
// the quota of the minute that is already exhausted.
func RetryAt(now time.Time) time.Time {
	return now.Truncate(time.Minute).Add(time.Minute)
}

// Classify says what class of failure err is. It returns "" for nil, the stored class for an
// *Error, and otherwise inspects API answers (HTTP code, googleapi reasons, ErrorInfo reasons),
// failed operations and transport errors. Anything it does not recognise is permanent: an
// unknown failure is better reported than retried forever.
func Classify(err error) Class {
	if err == nil {
		return ""
	}
	var ge *Error
	if errors.As(err, &ge) {
		return ge.Class
	}
	var oe *operationError
	if errors.As(err, &oe) {
		return classifyAPI(oe.httpStatus, oe.reasons)
	}
	if code, reasons, ok := apiAnswer(err); ok {
		return classifyAPI(code, reasons)
	}
	if isTransport(err) {
		return ClassTransient
	}
	return ClassPermanent
}

// Reasons are compared normalised (lower case, no underscores), because the same condition
// arrives as "rateLimitExceeded" in a REST error item and as "RATE_LIMIT_EXCEEDED" in an
// operation's error code or an ErrorInfo.
var (
	rateLimitedReasons = map[string]bool{
		"ratelimitexceeded":                 true,
		"userratelimitexceeded":             true,
		"quotaexceeded":                     true,
		"concurrentoperationsquotaexceeded": true,
	}
	inUseReasons = map[string]bool{
		"resourceinusebyanotherresource": true,
		"resourcenotready":               true,
	}
	notFoundReasons = map[string]bool{
		"notfound":         true,
		"resourcenotfound": true,
	}
	// transientReasons only matter for failed operations, which may carry no HTTP code.
	transientReasons = map[string]bool{
		"backenderror":  true,
		"internalerror": true,
	}
)

func normaliseReason(r string) string {
	return strings.ToLower(strings.ReplaceAll(r, "_", ""))
}

// classifyAPI maps an HTTP code (0 when unknown) and the reasons the API gave to a class.
// Reasons win over the code: Compute says "rate limited" with a 403, the same code it uses
// for "permission denied".
func classifyAPI(code int, reasons []string) Class {
	has := func(set map[string]bool) bool {
		for _, r := range reasons {
			if set[normaliseReason(r)] {
				return true
			}
		}
		return false
	}
	switch {
	case code >= 500:
		return ClassTransient
	case code == http.StatusTooManyRequests, has(rateLimitedReasons):
		return ClassRateLimited
	case has(inUseReasons):
		return ClassInUse
	case code == http.StatusNotFound, has(notFoundReasons):
		return ClassNotFound
	case code == http.StatusRequestTimeout, has(transientReasons):
		return ClassTransient
	default:
		return ClassPermanent
	}
}

// apiAnswer extracts the HTTP code and every reason from an error the API returned.
//
// Reasons are read from three places because none of them is reliable alone: the legacy
// error items (errors[].reason, where Compute puts rateLimitExceeded), the ErrorInfo that
// apierror parses, and the raw "details" of the googleapi.Error. The last one is needed
// because apierror parses details with a strict proto decoder that rejects the whole body
// when it also carries the legacy "errors" array — which Compute's bodies do — so
// APIError.Reason() is empty for exactly the CONCURRENT_OPERATIONS_QUOTA_EXCEEDED case.
func apiAnswer(err error) (code int, reasons []string, ok bool) {
	var ae *apierror.APIError
	if errors.As(err, &ae) {
		code, ok = ae.HTTPCode(), true
		if r := ae.Reason(); r != "" {
			reasons = append(reasons, r)
		}
	}
	var he *googleapi.Error
	if errors.As(err, &he) {
		code, ok = he.Code, true
		for _, item := range he.Errors {
			reasons = append(reasons, item.Reason)
		}
		for _, d := range he.Details {
			if m, isMap := d.(map[string]any); isMap {
				if r, isString := m["reason"].(string); isString {
					reasons = append(reasons, r)
				}
			}
		}
	}
	return code, reasons, ok
}

// isTransport reports whether err is a failure to talk to the API at all (as opposed to an
// answer from it), which is worth retrying: deadlines, resets, refused connections, cut-off
// bodies. Certificate errors are excluded; they do not heal by retrying.
func isTransport(err error) bool {
	var certErr *tls.CertificateVerificationError
	var authErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	if errors.As(err, &certErr) || errors.As(err, &authErr) || errors.As(err, &hostErr) {
		return false
	}
	var netErr net.Error
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled) ||
		errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &netErr)
}

// operationError is a delete that was accepted but whose operation finished with an error.
type operationError struct {
	operation  string
	httpStatus int // 0 when the operation reported no httpErrorStatusCode
	reasons    []string
	message    string
}

func (e *operationError) Error() string {
	s := fmt.Sprintf("operation %s failed", e.operation)
	if e.httpStatus != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.httpStatus)
	}
	return s + ": " + e.message
}
