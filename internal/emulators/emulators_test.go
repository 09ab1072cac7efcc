package emulators

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMain(m *testing.M) {
	Main(m, Firestore, PubSub)
}

// validProjectID is GCP's rule for project ids.
var validProjectID = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)

func TestProjectID(t *testing.T) {
	t.Parallel()
	names := []string{
		"plain",
		"two words/and a subtest",
		"UPPER_case__and--dashes",
		"a-very-long-subtest-name-that-goes-on-and-on-well-past-thirty-characters",
		"--",
		"日本語",
		"x1-",
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			seen := make(map[string]bool)
			for range 200 {
				id := ProjectID(t)
				if !validProjectID.MatchString(id) {
					t.Fatalf("ProjectID() = %q, not a valid GCP project id", id)
				}
				if seen[id] {
					t.Fatalf("ProjectID() returned %q twice", id)
				}
				seen[id] = true
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"TestStore_Put/two snapshots", "store-put-two-snapshots"},
		{"TestX", "x"},
		{"Test", ""},
		{"Test/__/", ""},
		{"BenchmarkSweep/n=10", "benchmarksweep-n-10"},
	}
	for _, tt := range tests {
		if got := sanitize(tt.in); got != tt.want {
			t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestEmulatorsAnswer checks what every test package relies on: after Main,
// the variables point at emulators that answer.
func TestEmulatorsAnswer(t *testing.T) {
	t.Parallel()
	for _, k := range []Kind{Firestore, PubSub} {
		t.Run(k.String(), func(t *testing.T) {
			t.Parallel()
			Require(t, k)
			code, body := do(t, http.MethodGet, "http://"+os.Getenv(k.EnvVar())+"/", "")
			if code != http.StatusOK || strings.TrimSpace(body) != "Ok" {
				t.Errorf("GET / = %d %q, want 200 \"Ok\"", code, body)
			}
		})
	}
}

// TestProjectsAreIsolated checks that one test's project sees nothing of
// another's, which is what lets tests share an emulator without resets.
func TestProjectsAreIsolated(t *testing.T) {
	t.Parallel()
	t.Run("firestore", func(t *testing.T) {
		t.Parallel()
		Require(t, Firestore)
		host := "http://" + os.Getenv(Firestore.EnvVar())
		mine, other := ProjectID(t), ProjectID(t)
		doc := func(project string) string {
			return host + "/v1/projects/" + project + "/databases/(default)/documents/probe/doc"
		}
		if code, body := do(t, http.MethodPatch, doc(mine), `{"fields":{"v":{"stringValue":"x"}}}`); code != http.StatusOK {
			t.Fatalf("write document: %d %s", code, body)
		}
		if code, _ := do(t, http.MethodGet, doc(mine), ""); code != http.StatusOK {
			t.Errorf("read own document: status %d, want 200", code)
		}
		if code, _ := do(t, http.MethodGet, doc(other), ""); code != http.StatusNotFound {
			t.Errorf("read document of another project: status %d, want 404", code)
		}
	})
	t.Run("pubsub", func(t *testing.T) {
		t.Parallel()
		Require(t, PubSub)
		host := "http://" + os.Getenv(PubSub.EnvVar())
		mine, other := ProjectID(t), ProjectID(t)
		topic := func(project string) string { return host + "/v1/projects/" + project + "/topics/probe-topic" }
		if code, body := do(t, http.MethodPut, topic(mine), `{}`); code != http.StatusOK {
			t.Fatalf("create topic: %d %s", code, body)
		}
		if code, _ := do(t, http.MethodGet, topic(other), ""); code != http.StatusNotFound {
			t.Errorf("get topic of another project: status %d, want 404", code)
		}
	})
}

// TestStopKillsJavaChild starts an emulator of its own and checks that both
// ways of ending it (stop, and the test process going away, simulated by
// closing the watchdog's pipe) leave no process of its group behind, free
// the port and remove its files: killing gcloud alone would leave the Java
// emulator running.
func TestStopKillsJavaChild(t *testing.T) {
	t.Parallel()
	if os.Getenv(Firestore.EnvVar()) == "" {
		Require(t, Firestore) // Main could not start one: neither can we.
	}
	tests := []struct {
		name string
		end  func(e *emulator)
	}{
		{"stop", func(e *emulator) { e.stop() }},
		{"test process gone", func(e *emulator) {
			e.stdin.Close()
			select {
			case <-e.done:
			case <-time.After(30 * time.Second):
				t.Error("watchdog did not exit after its pipe closed")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := start(Firestore)
			if err != nil {
				t.Fatal(err)
			}
			groups := e.groups()
			if len(groups) != 2 {
				t.Fatalf("emulator process groups = %v, want the watchdog's and gcloud's", groups)
			}
			t.Cleanup(e.stop)
			tt.end(e)
			// Generous: what is checked is that everything goes, not how
			// fast (a loaded 2-core machine once needed more than 10 s).
			deadline := time.Now().Add(30 * time.Second)
			for _, g := range groups {
				for syscall.Kill(-g, 0) == nil {
					if time.Now().After(deadline) {
						t.Fatalf("processes of group %d still run after the emulator was ended", g)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			for {
				if _, err := os.Stat(e.dir); errors.Is(err, os.ErrNotExist) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("emulator directory %s still exists after the emulator was ended", e.dir)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if _, err := http.Get("http://" + e.hostPort + "/"); err == nil {
				t.Errorf("%s still answers after the emulator was ended", e.hostPort)
			}
		})
	}
}

// fakeTB records how Require ends a test.
type fakeTB struct {
	testing.TB
	ended string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Skipf(format string, args ...any) {
	if f.ended == "" {
		f.ended = "skip: " + fmt.Sprintf(format, args...)
	}
}
func (f *fakeTB) Fatal(args ...any) {
	if f.ended == "" {
		f.ended = "fatal: " + fmt.Sprint(args...)
	}
}

func TestRequire(t *testing.T) {
	// t.Setenv: not parallel.
	const unknown = Kind(99)
	tests := []struct {
		name    string
		kind    Kind
		skip    string
		wantEnd string // prefix
	}{
		{"available", Firestore, "", ""},
		{"missing fails", unknown, "", "fatal: "},
		{"missing skips when asked", unknown, "1", "skip: "},
	}
	if os.Getenv(Firestore.EnvVar()) == "" {
		t.Skip("no Firestore emulator")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(SkipVariable, tt.skip)
			f := &fakeTB{TB: t}
			Require(f, tt.kind)
			got := f.ended
			if tt.wantEnd == "" && got != "" || !strings.HasPrefix(got, tt.wantEnd) {
				t.Errorf("Require ended the test with %q, want prefix %q", got, tt.wantEnd)
			}
		})
	}
}

func TestKindNames(t *testing.T) {
	t.Parallel()
	got := map[string]string{}
	for _, k := range []Kind{Firestore, PubSub} {
		got[k.String()] = k.EnvVar()
	}
	want := map[string]string{"firestore": "FIRESTORE_EMULATOR_HOST", "pubsub": "PUBSUB_EMULATOR_HOST"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("kinds (-want +got):\n%s", diff)
	}
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestStartReportsEarlyExit checks that an emulator that dies at start
// (here a gcloud that fails at once) is reported with its log right away,
// not after the readiness timeout.
func TestStartReportsEarlyExit(t *testing.T) {
	// t.Setenv: not parallel.
	dir := t.TempDir()
	fake := "#!/bin/sh\necho 'ERROR: (gcloud.emulators.firestore.start) the port is taken' >&2\nexit 3\n"
	if err := os.WriteFile(dir+"/gcloud", []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	begin := time.Now()
	e, err := start(Firestore)
	if err == nil {
		e.stop()
		t.Fatal("start succeeded with a gcloud that fails")
	}
	if !strings.Contains(err.Error(), "the port is taken") {
		t.Errorf("start error does not carry the emulator's log:\n%v", err)
	}
	if took := time.Since(begin); took > readyTimeout/2 {
		t.Errorf("start took %s to notice that gcloud exited", took)
	}
}
