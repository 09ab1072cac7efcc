package gcefake_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/snapsweep/snapsweep/gce/gcefake"
)

// TestBatchCountsEveryInnerCall: gcloud deletes several snapshots in one batch request
// (POST /batch/compute/v1, multipart/mixed); the fake answers each inner call as it would
// alone, in order, and the quota counts each of them.
func TestBatchCountsEveryInnerCall(t *testing.T) {
	t.Parallel()
	clk := &clock{t: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	_, _, fake, url := adminSetup(t, gcefake.Options{Now: clk.Now})
	for i := range 3 {
		fake.AddSnapshot("proj-a", fmt.Sprintf("s-%d", i), nil)
	}
	if err := fake.SetQuota("proj-a", gcefake.GroupWrites, 2); err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i := range 4 { // s-3 does not exist
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/http")
		h.Set("Content-ID", fmt.Sprintf("<batch+%d>", i))
		pw, err := mw.CreatePart(h)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(pw, "DELETE /compute/v1/projects/proj-a/global/snapshots/s-%d?alt=json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", i)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/batch/compute/v1", &body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "multipart/mixed; boundary="+mw.Boundary())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("batch answered %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	var got []string
	mr := multipart.NewReader(resp.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		inner, err := http.ReadResponse(bufio.NewReader(p), nil)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%s %d", p.Header.Get("Content-ID"), inner.StatusCode))
	}
	// Two deletes fit the minute's quota; the third and fourth call are refused as rate
	// limited before the fake looks for the snapshot, as every call over quota is.
	want := []string{"<response-batch+0> 200", "<response-batch+1> 200", "<response-batch+2> 403", "<response-batch+3> 403"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("batch answers (-want +got):\n%s", diff)
	}
	if st := fake.Stats(); st.ByMethod["snapshots.delete"] != 4 || st.QuotaErrors != 2 {
		t.Errorf("stats: %d delete calls, %d quota errors; want 4 and 2", st.ByMethod["snapshots.delete"], st.QuotaErrors)
	}
	if code, _ := call(t, "POST", url+"/batch/compute/v1", "x"); code != http.StatusBadRequest {
		t.Errorf("a batch that is not multipart/mixed: %d, want 400", code)
	}
}
