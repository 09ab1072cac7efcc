package gce_test

import (
	"testing"

	"github.com/googleapis/gax-go/v2/apierror"
)

func TestZZQuirk(t *testing.T) {
	withLegacy := `{"error":{"code":403,"message":"Quota exceeded","errors":[{"domain":"usageLimits","reason":"rateLimitExceeded","message":"m"}],"details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED","domain":"compute.googleapis.com"}]}}`
	without := `{"error":{"code":403,"message":"Quota exceeded","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONCURRENT_OPERATIONS_QUOTA_EXCEEDED","domain":"compute.googleapis.com"}]}}`
	for _, b := range []string{withLegacy, without} {
		ae := apiErr(t, 403, b).(*apierror.APIError)
		t.Logf("Reason()=%q HTTPCode=%d", ae.Reason(), ae.HTTPCode())
	}
}
