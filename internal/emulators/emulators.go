// Package emulators starts the Google Cloud emulators that snapsweep's tests
// run against (Firestore and Pub/Sub, through gcloud) and hands each test a
// project id of its own, so that tests share one emulator and still run in
// parallel without resetting it.
//
// A package whose tests need an emulator calls Main from its TestMain:
//
//	func TestMain(m *testing.M) { emulators.Main(m, emulators.Firestore) }
//
// and each such test calls Require before it uses the emulator. When the
// emulator's standard variable (FIRESTORE_EMULATOR_HOST, PUBSUB_EMULATOR_HOST)
// is already set, as under `make test`, Main uses that emulator and starts
// nothing.
//
// It is test support only: nothing outside tests and scripts uses it, and
// it never touches a project it did not hand out.
package emulators

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Kind names one emulator.
type Kind int

const (
	// Firestore is the Cloud Firestore emulator (native mode).
	Firestore Kind = iota + 1
	// PubSub is the Cloud Pub/Sub emulator.
	PubSub
)

// SkipVariable is the environment variable that, set to "1", lets a run go on
// without an emulator that could not be started: the tests that need it skip
// instead of failing.
const SkipVariable = "SNAPSWEEP_SKIP_EMULATORS"

// readyTimeout bounds how long an emulator may take to answer after start.
// Both usually answer within 5 s; a cold JVM on a busy 2-core machine is slower.
const readyTimeout = 60 * time.Second

// String returns the emulator's gcloud name.
func (k Kind) String() string {
	switch k {
	case Firestore:
		return "firestore"
	case PubSub:
		return "pubsub"
	default:
		return fmt.Sprintf("Kind(%d)", int(k))
	}
}

// EnvVar returns the standard variable that points clients at the emulator.
func (k Kind) EnvVar() string {
	switch k {
	case Firestore:
		return "FIRESTORE_EMULATOR_HOST"
	case PubSub:
		return "PUBSUB_EMULATOR_HOST"
	default:
		return ""
	}
}

// gcloudArgs returns the gcloud command line that starts the emulator on
// hostPort; dataDir is a directory the emulator may write to.
func (k Kind) gcloudArgs(hostPort, dataDir string) []string {
	switch k {
	case Firestore:
		return []string{"emulators", "firestore", "start", "--host-port=" + hostPort}
	case PubSub:
		// Without --data-dir every Pub/Sub emulator on the machine shares one
		// directory under ~/.config/gcloud.
		return []string{"beta", "emulators", "pubsub", "start", "--host-port=" + hostPort, "--data-dir=" + dataDir}
	default:
		return nil
	}
}

// state records, for Require, what Main was asked for and what became of it.
var state struct {
	sync.Mutex
	requested map[Kind]bool
	failed    map[Kind]error
}

// Main runs the tests of a package that needs the given emulators. For each
// kind whose variable is unset it starts the emulator on a free loopback
// port, waits until it answers and sets the variable; then it runs the tests,
// stops what it started and exits with the tests' code. It never returns.
//
// If an emulator cannot be started, Main prints why and exits 1, unless
// SNAPSWEEP_SKIP_EMULATORS=1, in which case the tests run and those that call
// Require for that emulator skip.
func Main(m *testing.M, kinds ...Kind) {
	os.Exit(run(m, kinds))
}

func run(m *testing.M, kinds []Kind) int {
	// Listing tests (`go test -list`, as `make fuzz` does) runs TestMain too;
	// it needs no emulator.
	if !flag.Parsed() {
		flag.Parse()
	}
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return m.Run()
	}

	state.Lock()
	state.requested = make(map[Kind]bool)
	state.failed = make(map[Kind]error)
	state.Unlock()

	var started []*emulator
	defer func() {
		for _, e := range started {
			e.stop()
		}
	}()
	type result struct {
		e   *emulator
		err error
	}
	results := make(map[Kind]chan result)
	for _, k := range kinds {
		state.Lock()
		state.requested[k] = true
		state.Unlock()
		if os.Getenv(k.EnvVar()) != "" || results[k] != nil {
			continue
		}
		// Start them side by side: each takes a few seconds of JVM start.
		ch := make(chan result, 1)
		results[k] = ch
		go func() {
			e, err := start(k)
			ch <- result{e, err}
		}()
	}
	failed := false
	for _, k := range kinds {
		ch := results[k]
		if ch == nil {
			continue
		}
		delete(results, k)
		r := <-ch
		if r.err == nil {
			started = append(started, r.e)
			os.Setenv(k.EnvVar(), r.e.hostPort)
			continue
		}
		fmt.Fprintf(os.Stderr, "emulators: %v\n", r.err)
		if os.Getenv(SkipVariable) != "1" {
			fmt.Fprintf(os.Stderr, "emulators: set %s=1 to skip the tests that need it instead\n", SkipVariable)
			failed = true
			continue
		}
		fmt.Fprintf(os.Stderr, "emulators: %s=1: tests that need %s will skip\n", SkipVariable, k)
		state.Lock()
		state.failed[k] = r.err
		state.Unlock()
	}
	if failed {
		return 1
	}
	return m.Run()
}

// Require stops the test unless emulator k is available: it skips when the
// run was asked to skip missing emulators (SNAPSWEEP_SKIP_EMULATORS=1) and
// fails otherwise.
func Require(t testing.TB, k Kind) {
	t.Helper()
	if os.Getenv(k.EnvVar()) != "" {
		return
	}
	state.Lock()
	requested, err := state.requested[k], state.failed[k]
	state.Unlock()
	why := fmt.Sprintf("%s is not set and TestMain did not ask emulators.Main for %s", k.EnvVar(), k)
	if requested {
		why = fmt.Sprintf("the %s emulator could not be started: %v", k, err)
	}
	if os.Getenv(SkipVariable) == "1" {
		t.Skipf("%s (%s=1)", why, SkipVariable)
	}
	t.Fatal(why)
}

// ProjectID returns a GCP project id that no other test uses, so that a test
// can use a shared emulator without resetting it or seeing another test's
// data. It has the form test-<short name>-<random>, at most 30 characters.
func ProjectID(t testing.TB) string {
	t.Helper()
	const (
		prefix    = "test-"
		suffixLen = 6
		maxLen    = 30
	)
	name := sanitize(t.Name())
	if room := maxLen - len(prefix) - 1 - suffixLen; len(name) > room {
		name = strings.TrimRight(name[:room], "-")
	}
	id := prefix
	if name != "" {
		id += name + "-"
	}
	return id + randomSuffix(suffixLen)
}

// sanitize turns a test name such as "TestStore_Put/two snapshots" into
// "store-put-two-snapshots".
func sanitize(testName string) string {
	s := strings.ToLower(testName)
	s = strings.TrimPrefix(s, "test")
	var b strings.Builder
	dash := true // drop leading dashes
	for _, r := range s {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
			continue
		}
		if !dash {
			b.WriteByte('-')
			dash = true
		}
	}
	return strings.TrimRight(b.String(), "-")
}

func randomSuffix(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	buf := make([]byte, n)
	if _, err := rand.Read(buf); err != nil {
		panic(fmt.Sprintf("emulators: read random bytes: %v", err)) // crypto/rand does not fail on Linux
	}
	for i, c := range buf {
		buf[i] = alphabet[int(c)%len(alphabet)]
	}
	return string(buf)
}

// emulator is one started emulator process group.
type emulator struct {
	kind     Kind
	hostPort string
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	done     chan struct{} // closed when the process has exited
	dir      string
	logPath  string
	pidFile  string // holds gcloud's pid, which is also its process group
}

// start launches emulator k on a free port and waits until it answers. A
// port taken between choosing and binding makes the emulator exit at once;
// start then tries another port.
func start(k Kind) (*emulator, error) {
	if _, err := exec.LookPath("gcloud"); err != nil {
		return nil, fmt.Errorf("start %s emulator: gcloud is not on PATH (install the Google Cloud SDK with the %s emulator and Java 17+)", k, k)
	}
	var errs []error
	for attempt := 0; attempt < 3; attempt++ {
		e, err := startOnce(k)
		if err == nil {
			return e, nil
		}
		errs = append(errs, err)
		if !errors.Is(err, errExited) {
			break
		}
	}
	return nil, errors.Join(errs...)
}

var errExited = errors.New("emulator exited before it answered")

// watchdog is the shell that runs gcloud and ends it. gcloud moves itself
// into a process group of its own unless it leads a session, so the shell
// starts it with setsid, records its pid (= its process group, which the Java
// emulator joins) in $WATCHDOG_PIDFILE, and kills that group when either
//   - its standard input, a pipe only the test process holds open, reaches
//     end of file: however the test process ends, even killed or panicking
//     past TestMain's cleanup, the emulator goes with it; or
//   - gcloud exits on its own (a taken port, a missing component), so that
//     start notices at once instead of waiting for the timeout.
//
// In the first case it also removes the emulator's directory
// ($WATCHDOG_DIR); in the second, start still needs the log in it. When
// the first case kills gcloud, the second path sees gcloud exit too: it
// waits for the first to finish instead of ending the shell (and the
// removal with it) at once, a race that left the directory behind on a
// loaded machine (TestStopKillsJavaChild).
const watchdog = `exec 3<&0 </dev/null
setsid /bin/sh -c 'echo $$ >"$WATCHDOG_PIDFILE"; exec "$@"' gcloud "$@" &
child=$!
stop_group() {
	g=$(cat "$WATCHDOG_PIDFILE" 2>/dev/null)
	if [ -n "$g" ]; then
		kill -TERM "-$g" 2>/dev/null
		i=0
		while kill -0 "-$g" 2>/dev/null && [ "$i" -lt 10 ]; do sleep 0.1; i=$((i+1)); done
		kill -KILL "-$g" 2>/dev/null
	fi
	if [ "$1" = clean ]; then rm -rf "$WATCHDOG_DIR"; fi
	kill -KILL 0
}
{ cat <&3 >/dev/null; : >"$WATCHDOG_DIR/eof"; stop_group clean; } &
reader=$!
wait "$child"
status=$?
# gcloud ended because the reader is stopping it: let the reader finish
# (it removes the directory); its kill ends this shell too.
if [ -e "$WATCHDOG_DIR/eof" ]; then wait "$reader"; fi
echo "emulator-watchdog: gcloud exited with status $status" >&2
stop_group keep-log`

func startOnce(k Kind) (*emulator, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("start %s emulator: %w", k, err)
	}
	return startOnPort(k, port)
}

func startOnPort(k Kind, port int) (*emulator, error) {
	dir, err := os.MkdirTemp("", "snapsweep-"+k.String()+"-emulator-")
	if err != nil {
		return nil, fmt.Errorf("start %s emulator: %w", k, err)
	}
	logPath := dir + "/emulator.log"
	logFile, err := os.Create(logPath)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s emulator: %w", k, err)
	}
	defer logFile.Close() // the child holds its own descriptor

	e := &emulator{
		kind:     k,
		hostPort: net.JoinHostPort("127.0.0.1", fmt.Sprint(port)),
		done:     make(chan struct{}),
		dir:      dir,
		logPath:  logPath,
	}
	args := append([]string{"-c", watchdog, "emulator-watchdog", "gcloud"}, k.gcloudArgs(e.hostPort, dir)...)
	e.pidFile = dir + "/gcloud.pid"
	e.cmd = exec.Command("/bin/sh", args...)
	e.cmd.Stdout = logFile
	e.cmd.Stderr = logFile
	e.cmd.Env = append(os.Environ(), "CLOUDSDK_CORE_DISABLE_PROMPTS=1", "WATCHDOG_PIDFILE="+e.pidFile, "WATCHDOG_DIR="+dir)
	// Its own process group, so that stop can end the watchdog and whatever
	// it started without touching the test process.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if e.stdin, err = e.cmd.StdinPipe(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s emulator: %w", k, err)
	}
	if err := e.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start %s emulator: %w", k, err)
	}
	go func() {
		e.cmd.Wait()
		close(e.done)
	}()

	if err := e.waitReady(readyTimeout); err != nil {
		log := e.logTail()
		e.stop()
		return nil, fmt.Errorf("start %s emulator on %s: %w\n--- emulator log ---\n%s--- end of emulator log ---", k, e.hostPort, err, log)
	}
	return e, nil
}

// waitReady polls GET http://HOST/ until the emulator answers 200.
func (e *emulator) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + e.hostPort + "/"
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-e.done:
			return errExited
		case <-ctx.Done():
			return fmt.Errorf("no answer from %s within %s", url, timeout)
		case <-tick.C:
		}
	}
}

// stop ends the emulator: gcloud, the Java emulator and the watchdog.
// Killing gcloud alone would leave Java running and holding the port.
func (e *emulator) stop() {
	groups := e.groups() // before the watchdog removes the pid file
	// End of file tells the watchdog to end gcloud's process group.
	e.stdin.Close()
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
	}
	for _, g := range groups {
		syscall.Kill(-g, syscall.SIGKILL)
	}
	<-e.done
	os.RemoveAll(e.dir)
}

// groups returns the process groups of the emulator: the watchdog's and,
// once it has started, gcloud's.
func (e *emulator) groups() []int {
	groups := []int{e.cmd.Process.Pid}
	if b, err := os.ReadFile(e.pidFile); err == nil {
		if g, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && g > 0 {
			groups = append(groups, g)
		}
	}
	return groups
}

// logTail returns the last part of the emulator's log.
func (e *emulator) logTail() string {
	const max = 8 << 10
	b, err := os.ReadFile(e.logPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)\n", e.logPath, err)
	}
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return string(b)
}

// freePort returns a loopback TCP port that nothing listens on right now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Private is an emulator of a test's own, which the test may stop, restart
// on the same address and freeze, to play an outage of the dependency.
type Private struct {
	kind     Kind
	hostPort string
	port     int
	mu       sync.Mutex
	e        *emulator
}

// StartPrivate starts an emulator of kind k for t alone and stops it when
// t ends. It fails t if the emulator cannot be started, or skips t when
// the run was asked to skip missing emulators.
func StartPrivate(t testing.TB, k Kind) *Private {
	t.Helper()
	if _, err := exec.LookPath("gcloud"); err != nil && os.Getenv(SkipVariable) == "1" {
		t.Skipf("gcloud is not on PATH (%s=1)", SkipVariable)
	}
	e, err := start(k)
	if err != nil {
		if os.Getenv(SkipVariable) == "1" {
			t.Skipf("%v (%s=1)", err, SkipVariable)
		}
		t.Fatal(err)
	}
	_, portStr, _ := net.SplitHostPort(e.hostPort)
	port, _ := strconv.Atoi(portStr)
	p := &Private{kind: k, hostPort: e.hostPort, port: port, e: e}
	t.Cleanup(p.Stop)
	return p
}

// HostPort is the emulator's address, also after a restart.
func (p *Private) HostPort() string { return p.hostPort }

// Stop ends the emulator (its data is lost); Stop of a stopped one does nothing.
func (p *Private) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e != nil {
		p.e.Thaw()
		p.e.stop()
		p.e = nil
	}
}

// Restart starts a stopped emulator again on the same address and waits
// until it answers.
func (p *Private) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e != nil {
		return nil
	}
	var errs []error
	for range 3 { // the port may linger a moment after the stop
		e, err := startOnPort(p.kind, p.port)
		if err == nil {
			p.e = e
			return nil
		}
		errs = append(errs, err)
		time.Sleep(500 * time.Millisecond)
	}
	return errors.Join(errs...)
}

// Freeze stops the emulator's processes (SIGSTOP): connections stay open
// and nothing answers, as with a stalled database.
func (p *Private) Freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e != nil {
		groups := p.e.groups()
		for _, g := range groups {
			syscall.Kill(-g, syscall.SIGSTOP)
		}
		// A signal to a process group is delivered asynchronously: on a
		// busy machine the JVM can still answer a request or two after
		// kill returns. The stall begins when every member is stopped.
		waitStopped(groups, 2*time.Second)
	}
}

// waitStopped waits, at most d, until every process in the groups is
// stopped (state T in /proc/PID/stat).
func waitStopped(groups []int, d time.Duration) {
	in := map[int]bool{}
	for _, g := range groups {
		in[g] = true
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		running := false
		entries, _ := os.ReadDir("/proc")
		for _, ent := range entries {
			pid, err := strconv.Atoi(ent.Name())
			if err != nil {
				continue
			}
			b, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
			if err != nil {
				continue
			}
			// pid (comm) state ppid pgrp ...: comm may hold spaces.
			f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
			if len(f) < 3 {
				continue
			}
			pgrp, _ := strconv.Atoi(f[2])
			if in[pgrp] && pid > 0 && f[0] != "T" && f[0] != "t" && f[0] != "Z" {
				running = true
				break
			}
		}
		if !running {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Thaw resumes a frozen emulator (SIGCONT).
func (p *Private) Thaw() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.e != nil {
		p.e.Thaw()
	}
}

// Thaw sends SIGCONT to the emulator's process groups.
func (e *emulator) Thaw() {
	for _, g := range e.groups() {
		syscall.Kill(-g, syscall.SIGCONT)
	}
}
