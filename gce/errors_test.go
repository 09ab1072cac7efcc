package gce_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/googleapis/gax-go/v2/apierror"
	"google.golang.org/api/googleapi"

	"github.com/snapsweep/snapsweep/gce"
)

// apiErr builds the error the REST client returns for an HTTP answer: googleapi parses the
// body, gax wraps it in an *apierror.APIError.
func apiErr(t *testing.T, code int, body string) error {
	t.Helper()
	err := googleapi.CheckResponseWithBody(&http.Response{StatusCode: code, Header: http.Header{}}, []byte(body))
	if err == nil {
		t.Fatalf("CheckResponseWithBody(%d) returned nil", code)
	}
	if ae, ok := apierror.FromError(err); ok {
		return ae
	}
	return err
}

func TestClassify(t *testing.T) {
	t.Parallel()
	legacy := func(code int, reason string) string {
		return fmt.Sprintf(`{"error":{"code":%d,"message":"m","errors":[{"domain":"global","reason":%q,"message":"m"}]}}`, code, reason)
	}
	// Compute's shape for the concurrent-operations quota: the specific reason is only in
	// the ErrorInfo. The legacy item's reason is made generic here to prove the ErrorInfo
	// alone is enough.
	concurrentOps := `{"error":{"code":403,"message":"Quota exceeded","errors":[{"domain":"global","reason":"forbidden","message":"m"}],` +
		`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED","domain":"compute.googleapis.com","metadata":{"containerType":"PROJECT"}}]}}`
	// The same without the legacy array, which is the only form apierror itself parses.
	errorInfoOnly := `{"error":{"code":403,"message":"Quota exceeded",` +
		`"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED","domain":"compute.googleapis.com"}]}}`

	cases := []struct {
		name string
		err  func(t *testing.T) error
		want gce.Class
	}{
		{"nil", func(*testing.T) error { return nil }, ""},
		{"404", func(t *testing.T) error { return apiErr(t, 404, legacy(404, "notFound")) }, gce.ClassNotFound},
		{"403 rateLimitExceeded", func(t *testing.T) error { return apiErr(t, 403, legacy(403, "rateLimitExceeded")) }, gce.ClassRateLimited},
		{"403 ErrorInfo with legacy items", func(t *testing.T) error { return apiErr(t, 403, concurrentOps) }, gce.ClassRateLimited},
		{"403 ErrorInfo only", func(t *testing.T) error { return apiErr(t, 403, errorInfoOnly) }, gce.ClassRateLimited},
		{"403 forbidden", func(t *testing.T) error { return apiErr(t, 403, legacy(403, "forbidden")) }, gce.ClassPermanent},
		{"429 without body", func(t *testing.T) error { return apiErr(t, 429, "Too Many Requests") }, gce.ClassRateLimited},
		{"400 in use", func(t *testing.T) error { return apiErr(t, 400, legacy(400, "resourceInUseByAnotherResource")) }, gce.ClassInUse},
		{"400 invalid", func(t *testing.T) error { return apiErr(t, 400, legacy(400, "invalid")) }, gce.ClassPermanent},
		{"408", func(t *testing.T) error { return apiErr(t, 408, "") }, gce.ClassTransient},
		{"502 html", func(t *testing.T) error { return apiErr(t, 502, "<html>bad gateway</html>") }, gce.ClassTransient},
		{"googleapi error unwrapped", func(*testing.T) error {
			return fmt.Errorf("x: %w", &googleapi.Error{Code: 403, Errors: []googleapi.ErrorItem{{Reason: "userRateLimitExceeded"}}})
		}, gce.ClassRateLimited},
		{"deadline", func(*testing.T) error { return fmt.Errorf("get: %w", context.DeadlineExceeded) }, gce.ClassTransient},
		{"connection reset", func(*testing.T) error {
			return &url.Error{Op: "Get", URL: "http://x", Err: fmt.Errorf("read: %w", syscall.ECONNRESET)}
		}, gce.ClassTransient},
		{"cut-off body", func(*testing.T) error { return fmt.Errorf("read body: %w", io.ErrUnexpectedEOF) }, gce.ClassTransient},
		{"unknown certificate authority", func(*testing.T) error {
			return &url.Error{Op: "Get", URL: "https://x", Err: x509.UnknownAuthorityError{}}
		}, gce.ClassPermanent},
		{"unknown error", func(*testing.T) error { return errors.New("something odd") }, gce.ClassPermanent},
		{"already classified", func(*testing.T) error {
			return fmt.Errorf("outer: %w", &gce.Error{Class: gce.ClassInUse, Err: errors.New("x")})
		}, gce.ClassInUse},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.err(t)
			if got := gce.Classify(err); got != tc.want {
				t.Errorf("Classify(%v) = %q, want %q", err, got, tc.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	err := &gce.Error{Class: gce.ClassNotFound, Op: "delete snapshot", Project: "p", Name: "n", RetryAfter: time.Time{}, Err: errors.New("boom")}
	want := "gce: delete snapshot p/n: not_found: boom"
	if got := err.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if !strings.Contains(fmt.Sprint(fmt.Errorf("wrap: %w", err)), want) {
		t.Error("wrapped message lost the original")
	}
}
