package handlers_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/handlers"
)

// countingReader counts the bytes read from the request body.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func sweepSeeds() [][]byte {
	big := handlers.MaxSweepBody
	return [][]byte{
		nil,
		[]byte(" \n\t "),
		[]byte(`{}`),
		[]byte(`{"dryRun":true}`),
		[]byte(`{"dryRun":false}`),
		[]byte(`null`),
		[]byte(`{"dryRun":null}`),
		[]byte(`{"dryRun":"true"}`),
		[]byte(`{"dryRun":1}`),
		[]byte(`{"dryRun":{}}`),
		[]byte(`[]`),
		[]byte(`"dryRun"`),
		[]byte(`true`),
		[]byte(`12345`),
		[]byte(`{"dryRun":true}{"dryRun":false}`),
		[]byte(`{"dryRun":true,"DRYRUN":false}`),
		[]byte(`{"dryRun":true`),
		[]byte(`{"dryRun":tru}`),
		[]byte("\xef\xbb\xbf{\"dryRun\":true}"),
		[]byte("{\"dryRun\":true,\"x\":\"\xff\xfe\xed\xa0\x80\"}"),
		[]byte("{\"\xff\":true}"),
		[]byte(`{"x":"\ud800"}`),
		[]byte(`{"x":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}`),
		[]byte(strings.Repeat("[", 10000)),
		[]byte(`{"x":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat("}", 5000) + `}`),
		// A string that crosses the limit, and one that ends right at it.
		[]byte(`{"x":"` + strings.Repeat("a", big) + `"}`),
		[]byte(`{"x":"` + strings.Repeat("a", big-len(`{"x":""}`)) + `"}`),
		[]byte(`{"dryRun":true}` + strings.Repeat(" ", big)),
		[]byte(strings.Repeat(" ", big) + `{"dryRun":true}`),
		[]byte(`{"n":` + strings.Repeat("9", 5000) + `}`),
		[]byte(`{"n":1e999999}`),
		[]byte(`{` + strings.Repeat(`"dryRun":true,`, 3000) + `"dryRun":false}`),
	}
}

// FuzzSweepBody feeds arbitrary bodies to DecodeSweepRequest: it must not
// panic, every error must be an *events.RejectError, it must never read
// more than MaxSweepBody+1 bytes, and its answer must agree with a plain
// json.Decoder given the limit.
func FuzzSweepBody(f *testing.F) {
	for _, s := range sweepSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		cr := &countingReader{r: bytes.NewReader(body)}
		r := httptest.NewRequest(http.MethodPost, "/scheduler/sweep", cr)
		r.Header.Set("X-CloudScheduler-ScheduleTime", "2026-11-01T12:00:00Z")
		req, err := handlers.DecodeSweepRequest(r)

		if cr.n > handlers.MaxSweepBody+1 {
			t.Fatalf("read %d bytes of the body, limit %d", cr.n, handlers.MaxSweepBody)
		}
		if err != nil {
			var rej *events.RejectError
			if !errors.As(err, &rej) {
				t.Fatalf("error %v (%T) is not an *events.RejectError", err, err)
			}
			if rej.Reason != events.ReasonBadJSON && rej.Reason != events.ReasonTooLarge && rej.Reason != events.ReasonInvalidField {
				t.Fatalf("rejection %v: reason %q", rej, rej.Reason)
			}
			if rej.Detail == "" {
				t.Fatalf("rejection %v has no detail", rej)
			}
			return
		}
		if req.RunID != "2026-11-01T12:00:00Z" {
			t.Fatalf("RunID = %q, want the X-CloudScheduler-ScheduleTime header", req.RunID)
		}

		// The reference: the same decoding without a limit, with the exact
		// key "dryRun" (encoding/json alone would match "DRYRUN" too). A
		// body it refuses must be refused; an accepted one must have fitted
		// in the limit and give the same request.
		var ref handlers.SweepRequest
		var fields map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(body))
		refErr := dec.Decode(&fields)
		if raw, ok := fields["dryRun"]; ok && refErr == nil {
			refErr = json.Unmarshal(raw, &ref.DryRun)
		}
		switch {
		case errors.Is(refErr, io.EOF):
			if req.DryRun {
				t.Fatalf("empty body decoded as dryRun=true")
			}
		case refErr != nil:
			t.Fatalf("accepted a body json refuses (%v): %q", refErr, clip(body))
		case dec.InputOffset() > handlers.MaxSweepBody:
			t.Fatalf("accepted a body whose JSON value ends at byte %d, past the %d-byte limit", dec.InputOffset(), handlers.MaxSweepBody)
		case ref.DryRun != req.DryRun:
			t.Fatalf("dryRun = %v, json says %v for %q", req.DryRun, ref.DryRun, clip(body))
		}
	})
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}
