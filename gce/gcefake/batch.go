package gcefake

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
)

// maxBatch is the most calls one batch request may carry: "You're limited to 1000 calls in
// a single batch request" (Compute Engine docs, "Sending batch requests").
const maxBatch = 1000

// serveBatch answers POST /batch/compute/v1, the batch endpoint gcloud uses for commands
// that name several resources (`gcloud compute snapshots delete a b c`). The body is
// multipart/mixed; each part (Content-Type application/http) is one inner HTTP request,
// and the answer is multipart/mixed with one application/http part per request, its
// Content-ID "response-" plus the request's, in order. Each inner call is served, logged
// and counted against the quotas exactly like the same call on its own: Compute counts
// "each request in the batch as a separate request" toward the rate quotas (same page).
func (f *Fake) serveBatch(w http.ResponseWriter, r *http.Request) {
	fail := func(msg string) {
		write(w, errorResponse(http.StatusBadRequest, "badRequest", msg))
	}
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/mixed" || params["boundary"] == "" {
		fail(fmt.Sprintf("batch request: Content-Type %q is not multipart/mixed with a boundary", r.Header.Get("Content-Type")))
		return
	}
	type part struct {
		id  string
		req *http.Request
	}
	var parts []part
	mr := multipart.NewReader(r.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail("batch request: " + err.Error())
			return
		}
		inner, err := http.ReadRequest(bufio.NewReader(p))
		if err != nil {
			fail("batch request: part " + p.Header.Get("Content-ID") + ": " + err.Error())
			return
		}
		body, _ := io.ReadAll(inner.Body)
		inner.Body = io.NopCloser(bytes.NewReader(body))
		inner = inner.WithContext(r.Context())
		inner.RequestURI = ""
		parts = append(parts, part{id: p.Header.Get("Content-ID"), req: inner})
		if len(parts) > maxBatch {
			fail(fmt.Sprintf("batch request: more than %d calls", maxBatch))
			return
		}
	}
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	for _, p := range parts {
		rec := httptest.NewRecorder()
		f.mux.ServeHTTP(rec, p.req)
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/http")
		if p.id != "" {
			h.Set("Content-ID", "<response-"+strings.Trim(p.id, "<>")+">")
		}
		pw, err := mw.CreatePart(h)
		if err != nil {
			return
		}
		res := rec.Result()
		fmt.Fprintf(pw, "HTTP/1.1 %d %s\r\n", res.StatusCode, http.StatusText(res.StatusCode))
		for k, vs := range res.Header {
			for _, v := range vs {
				fmt.Fprintf(pw, "%s: %s\r\n", k, v)
			}
		}
		fmt.Fprintf(pw, "Content-Length: %d\r\n\r\n", rec.Body.Len())
		_, _ = pw.Write(rec.Body.Bytes())
	}
	_ = mw.Close()
	w.Header().Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out.Bytes())
}
