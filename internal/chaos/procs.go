package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// freePort returns a loopback port nothing listens on (there is a small
// window before the child binds it; good enough for one run).
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// proc is one child process the driver owns.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts bin with args and env, logging to logPath. The child
// dies with the driver (Pdeathsig), so an aborted run leaves nothing behind.
func startProc(name, bin string, args, env []string, logPath string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill sends SIGKILL and waits for the exit.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitHTTP polls url until it answers 200, the process exits or d passes.
func waitHTTP(ctx context.Context, p *proc, url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited at start (%v); see its log", p.name, p.err)
		}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s did not answer %s within %s", p.name, url, d)
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// memKB reads VmHWM (peak RSS) and VmRSS of pid from /proc, in kB.
func memKB(pid int) (hwm, rss int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(v)
		if len(fields) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch k {
		case "VmHWM":
			hwm = n
		case "VmRSS":
			rss = n
		}
	}
	return hwm, rss, sc.Err()
}

// instance is one `snapsweep serve` process slot: a port and the
// incarnations started on it.
type instance struct {
	idx  int
	name string
	port int
	bin  string
	env  []string
	log  string

	mu    sync.Mutex
	cur   *proc
	up    bool
	peaks []int64 // VmHWM (kB) of each incarnation, in order
	pids  []int
}

func (in *instance) url() string { return fmt.Sprintf("http://127.0.0.1:%d", in.port) }

// start starts a new incarnation and waits until it answers /health.
func (in *instance) start(ctx context.Context) error {
	p, err := startProc(in.name, in.bin, []string{"serve"}, in.env, in.log)
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.cur = p
	in.peaks = append(in.peaks, 0)
	in.pids = append(in.pids, p.pid())
	in.mu.Unlock()
	if err := waitHTTP(ctx, p, in.url()+"/health", 60*time.Second); err != nil {
		return fmt.Errorf("%w; end of %s:\n%s", err, in.log, tail(in.log, 10))
	}
	in.mu.Lock()
	in.up = true
	in.mu.Unlock()
	return nil
}

// sample records the current incarnation's peak RSS.
func (in *instance) sample() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.cur == nil || in.cur.exited() {
		return
	}
	if hwm, _, err := memKB(in.cur.pid()); err == nil && hwm > in.peaks[len(in.peaks)-1] {
		in.peaks[len(in.peaks)-1] = hwm
	}
}

func (in *instance) isUp() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.up
}

// kill SIGKILLs the current incarnation (after a last memory sample).
func (in *instance) kill() int {
	in.sample()
	in.mu.Lock()
	p := in.cur
	in.up = false
	in.mu.Unlock()
	p.kill()
	return p.pid()
}

// quit makes the current incarnation dump its goroutines and exit
// (SIGQUIT); it returns the pid, or 0 if it was not running.
func (in *instance) quit() int {
	in.sample()
	in.mu.Lock()
	p := in.cur
	in.up = false
	in.mu.Unlock()
	if p == nil || p.exited() {
		return 0
	}
	_ = p.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
	}
	return p.pid()
}

// stop ends the current incarnation gracefully (Cloud Run's SIGTERM).
func (in *instance) stop() {
	in.sample()
	in.mu.Lock()
	p := in.cur
	in.up = false
	in.mu.Unlock()
	if p != nil {
		p.stop(10 * time.Second)
	}
}

// crashed reports an incarnation that exited without being told to.
func (in *instance) crashed() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.up && in.cur != nil && in.cur.exited() {
		in.up = false
		return fmt.Errorf("%s (pid %d) exited on its own: %v; see %s", in.name, in.cur.pid(), in.cur.err, in.log)
	}
	return nil
}

func (in *instance) peakKB() (int64, []int64, []int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Max(append([]int64{0}, in.peaks...)), slices.Clone(in.peaks), slices.Clone(in.pids)
}

// groupMembers lists the processes of process group pgid and every
// descendant of its leader (in case one moved to a group of its own), with
// their command names.
func groupMembers(pgid int) (map[int]string, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	type info struct {
		comm       string
		ppid, pgrp int
	}
	all := map[int]info{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may contain spaces.
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+1:])
		if len(f) < 3 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		pgrp, _ := strconv.Atoi(f[2])
		all[pid] = info{comm: s[open+1 : close], ppid: ppid, pgrp: pgrp}
	}
	out := map[int]string{}
	for pid, i := range all {
		if i.pgrp == pgid {
			out[pid] = i.comm
		}
	}
	// Descendants of the leader.
	for changed := true; changed; {
		changed = false
		for pid, i := range all {
			if _, in := out[pid]; !in {
				if _, parentIn := out[i.ppid]; parentIn {
					out[pid] = i.comm
					changed = true
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no process in group %d", pgid)
	}
	return out, nil
}

// freeze stops the emulator's processes (SIGSTOP) and returns the function
// that resumes them (SIGCONT); it is safe to call more than once.
func freeze(pgid int) (members map[int]string, resume func(), err error) {
	members, err = groupMembers(pgid)
	if err != nil {
		return nil, nil, err
	}
	hasJava := false
	for _, c := range members {
		if strings.Contains(c, "java") {
			hasJava = true
		}
	}
	if !hasJava {
		return members, nil, fmt.Errorf("process group %d has no java process (%v): is it the Firestore emulator?", pgid, members)
	}
	signal := func(sig syscall.Signal) error {
		var errs []error
		if err := syscall.Kill(-pgid, sig); err != nil {
			errs = append(errs, fmt.Errorf("group %d: %w", pgid, err))
		}
		for pid := range members {
			if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("pid %d: %w", pid, err))
			}
		}
		return errors.Join(errs...)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = signal(syscall.SIGCONT) }) }
	if err := signal(syscall.SIGSTOP); err != nil {
		resume()
		return members, nil, err
	}
	return members, resume, nil
}
