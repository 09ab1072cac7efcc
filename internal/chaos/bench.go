package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/pubsub/v2"

	"github.com/snapsweep/snapsweep/events"
)

// BenchProject is one project of a pacing benchmark: its delete quota
// (per synchronized minute, as Compute counts it) and how many snapshots
// its tasks report.
type BenchProject struct {
	ID             string `json:"project"`
	QuotaPerMinute int    `json:"quotaPerMinute"`
	Snapshots      int    `json:"snapshots"`
}

// BenchConfig is one pacing benchmark through `snapsweep serve`: several
// instances on the Firestore emulator, the driver playing Pub/Sub push at
// production concurrency, and the Compute fake counting quota per project
// and minute. No faults: it measures how much of each project's quota the
// service uses, and how long a completed task waits for its deletions.
type BenchConfig struct {
	Name    string
	Bin     string
	LogDir  string
	Project string // Firestore and Pub/Sub project
	// Instances is the number of serve processes; Rate their
	// SNAPSWEEP_DELETE_RATE, RateByProject their
	// SNAPSWEEP_DELETE_RATE_BY_PROJECT (empty: not set).
	Instances     int
	Rate          float64
	RateByProject string
	Projects      []BenchProject
	// SnapsPerTask snapshots per task; a session per 100 tasks.
	SnapsPerTask int
	// CompleteOver spreads the task.completed events evenly over this
	// long; 0 publishes them all at once.
	CompleteOver time.Duration
	// Backlog holds the cleanup pushers until every event is applied: the
	// cleanup messages wait in their subscriptions, and the figures are
	// the cleanup's pace on a backlog, not the Firestore emulator's ingest
	// speed (which BenchmarkIngest and the latency scenario measure). With
	// the events applied meanwhile, a project's first-to-last speed was
	// the speed its task.completed events were applied at, 4 to 9 tasks a
	// second on the emulator, and the 1,200 project's "top speed" beside
	// the others measured that.
	Backlog bool
	// Inflight is the push window per subscription.
	Inflight int
	// Timeout bounds the wait for every deletion.
	Timeout time.Duration
	Out     io.Writer
}

// ProjectFigures is what one project of a benchmark achieved.
type ProjectFigures struct {
	BenchProject
	Deleted int `json:"deleted"`
	// FirstDelete and LastDelete bound the project's deletions.
	FirstDelete time.Time `json:"firstDelete"`
	LastDelete  time.Time `json:"lastDelete"`
	// Minutes are the whole synchronized minutes between the first and
	// the last deletion; QuotaRatio their deletions ÷ their granted quota.
	Minutes    []MinuteFigure `json:"minutes"`
	QuotaRatio float64        `json:"quotaRatio"`
	// TopSpeed is deletions per second from the first to the last one.
	TopSpeed float64 `json:"deletesPerSecond"`
	// QuotaErrors over the run, and per instance and minute of deletion.
	QuotaErrors                  int     `json:"quotaErrors"`
	QuotaErrorsPerInstanceMinute float64 `json:"quotaErrorsPerInstanceMinute"`
	// WorstInstanceMinute is the most quota errors one serve instance was
	// answered in one synchronized minute, and WorstAt where ("serve-1
	// 10:41"; empty without errors): each instance reaches the fake under
	// a base URL of its own (/caller/serve-N), so the fake counts them
	// apart, whatever the instance logs.
	WorstInstanceMinute int    `json:"worstInstanceMinuteQuotaErrors"`
	WorstAt             string `json:"worstInstanceMinute,omitempty"`
}

// BenchResult is one benchmark's figures.
type BenchResult struct {
	Name      string           `json:"name"`
	Instances int              `json:"instances"`
	Rate      float64          `json:"deleteRate"`
	Projects  []ProjectFigures `json:"projects"`
	// Latency from a task.completed's publication to the deletion of
	// the task's last snapshot, over every task.
	LatencyP50 time.Duration `json:"latencyP50"`
	LatencyP99 time.Duration `json:"latencyP99"`
	LatencyMax time.Duration `json:"latencyMax"`
	Tasks      int           `json:"tasks"`
	DurationS  float64       `json:"durationSeconds"`
}

// benchTask is one task of a benchmark: its events and snapshots.
type benchTask struct {
	project, session, id string
	snaps                []string
	completedAt          time.Time // when its task.completed was published
}

// Bench runs one pacing benchmark.
func Bench(ctx context.Context, cfg BenchConfig) (*BenchResult, error) {
	start := time.Now()
	logf := func(format string, args ...any) {
		fmt.Fprintf(cfg.Out, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	if err := os.MkdirAll(cfg.LogDir, 0o755); err != nil {
		return nil, err
	}
	var projects []string
	for _, p := range cfg.Projects {
		projects = append(projects, p.ID)
	}
	ps, evSub, routes, err := newPubSub(ctx, cfg.Project, projects, time.Minute)
	if err != nil {
		return nil, err
	}
	defer ps.Close()
	fake, fakeURL, err := startFake(ctx, cfg.Bin, cfg.LogDir, "--latency", "200ms", "--quota", "0")
	if err != nil {
		return nil, err
	}
	defer fake.stop(5 * time.Second)

	var tasks []*benchTask
	for _, p := range cfg.Projects {
		if err := postJSON(ctx, fakeURL+"/fake/quota", map[string]any{"project": p.ID, "group": "writes", "perMinute": p.QuotaPerMinute}, nil); err != nil {
			return nil, fmt.Errorf("set the quota of %s: %w", p.ID, err)
		}
		per := max(cfg.SnapsPerTask, 1)
		for t := 0; t*per < p.Snapshots; t++ {
			tk := &benchTask{project: p.ID, session: fmt.Sprintf("bench-%s-%d", p.ID, t/100), id: fmt.Sprintf("vm-%d", t)}
			for k := 0; k < per && t*per+k < p.Snapshots; k++ {
				tk.snaps = append(tk.snaps, fmt.Sprintf("snap-%d-%d", t, k))
			}
			tasks = append(tasks, tk)
		}
	}
	if err := seedSnapshots(ctx, fakeURL, tasks); err != nil {
		return nil, err
	}
	logf("%s: %d tasks, projects %v, fake at %s", cfg.Name, len(tasks), cfg.Projects, fakeURL)

	var instances []*instance
	defer func() {
		for _, in := range instances {
			in.stop()
		}
	}()
	extra := []string{"SNAPSWEEP_PROJECTS=" + strings.Join(projects, ",")}
	if cfg.RateByProject != "" {
		extra = append(extra, "SNAPSWEEP_DELETE_RATE_BY_PROJECT="+cfg.RateByProject)
	}
	for i := range cfg.Instances {
		// Each instance names itself in its Compute endpoint, so that the
		// fake counts its quota errors apart (gcefake's /caller/ prefix).
		in, err := startServe(ctx, i, cfg.Bin, cfg.LogDir, serveEnv(cfg.Project, fakeURL+"/caller/"+instanceName(i), cfg.Rate, extra...))
		if in != nil {
			instances = append(instances, in)
		}
		if err != nil {
			return nil, err
		}
	}
	targets := func() []*instance { return instances }
	evPush := newPusher("migration-events", "/pubsub/migration-events", evSub, ps.SubscriptionAdminClient,
		targets, cfg.Inflight, false, time.Minute, time.Second, 10*time.Second, nil)
	// One cleanup subscription per project (and the catch-all), each with
	// a push window of its own, as in production (terraform/pubsub.tf).
	clPush := newCleanupPushers(routes, ps.SubscriptionAdminClient,
		targets, cfg.Inflight, false, time.Minute, time.Second, 10*time.Second)
	pushCtx, stopPush := context.WithCancel(ctx)
	var pushWG sync.WaitGroup
	pushWG.Go(func() { evPush.run(pushCtx) })
	// Backlog: the cleanup pushers start once every event is applied.
	cleanupGo := make(chan struct{})
	if !cfg.Backlog {
		close(cleanupGo)
	}
	pushWG.Go(func() {
		select {
		case <-cleanupGo:
			clPush.run(pushCtx)
		case <-pushCtx.Done():
		}
	})
	defer pushWG.Wait()
	defer stopPush()

	pub := ps.Publisher("migration-events")
	defer pub.Stop()
	// Register first: sessions, tasks, snapshots.
	var reg [][]byte
	seen := map[string]bool{}
	for _, tk := range tasks {
		if !seen[tk.session] {
			seen[tk.session] = true
			reg = append(reg, benchEvent(events.Event{Type: events.SessionStarted, SessionID: tk.session}))
		}
		reg = append(reg, benchEvent(events.Event{Type: events.TaskStarted, SessionID: tk.session, TaskID: tk.id}))
		for _, sn := range tk.snaps {
			reg = append(reg, benchEvent(events.Event{Type: events.SnapshotCreated, SessionID: tk.session, TaskID: tk.id,
				Snapshot: &events.SnapshotRef{Project: tk.project, Name: sn}}))
		}
	}
	if err := publishAll(ctx, pub, reg); err != nil {
		return nil, err
	}
	if !waitFor(ctx, 10*time.Minute, func() bool { return evPush.ackedCount() >= len(reg) }) {
		return nil, fmt.Errorf("registration: %d of %d events acked", evPush.ackedCount(), len(reg))
	}
	logf("registered: %d events acked (%s)", len(reg), evPush.stats())

	// Then complete the tasks: at once, or spread over CompleteOver.
	t0 := time.Now()
	for i, tk := range tasks {
		if cfg.CompleteOver > 0 {
			sleepUntil(ctx, t0.Add(cfg.CompleteOver*time.Duration(i)/time.Duration(len(tasks))))
		}
		tk.completedAt = time.Now()
		res := pub.Publish(ctx, &pubsub.Message{Data: benchEvent(events.Event{Type: events.TaskCompleted, SessionID: tk.session, TaskID: tk.id}),
			Attributes: map[string]string{"eventType": string(events.TaskCompleted)}})
		if cfg.CompleteOver > 0 {
			if _, err := res.Get(ctx); err != nil {
				return nil, fmt.Errorf("publish: %w", err)
			}
		}
	}
	pub.Flush()
	logf("published %d task.completed over %s", len(tasks), time.Since(t0).Round(100*time.Millisecond))
	if cfg.Backlog {
		all := len(reg) + len(tasks)
		if !waitFor(ctx, 10*time.Minute, func() bool { return evPush.ackedCount() >= all }) {
			return nil, fmt.Errorf("completion: %d of %d events acked", evPush.ackedCount(), all)
		}
		logf("every event applied (%s); cleanup push starts on the backlog", evPush.stats())
		close(cleanupGo)
	}

	total := 0
	for _, p := range cfg.Projects {
		total += p.Snapshots
	}
	var facts map[string]map[string]fakeFacts
	lastProgress := time.Now()
	done := waitFor(ctx, cfg.Timeout, func() bool {
		f, err := readFacts(ctx, fakeURL, projects)
		if err != nil {
			return false
		}
		facts = f
		gone := 0
		byProject := map[string]int{}
		for p, byName := range f {
			for _, fc := range byName {
				if !fc.Exists {
					gone++
					byProject[p]++
				}
			}
		}
		// Where the time goes: deletions so far by project, the events
		// still to apply (they publish the cleanup messages), and each
		// cleanup subscription's push window and backlog.
		if time.Since(lastProgress) >= 5*time.Second {
			lastProgress = time.Now()
			var parts []string
			for _, p := range projects {
				parts = append(parts, fmt.Sprintf("%s %d", p, byProject[p]))
			}
			logf("deleted: %s; events pending %d; cleanup pushers: %s", strings.Join(parts, ", "), evPush.pending(), clPush.windows())
		}
		return gone >= total
	})
	if !done {
		logf("not every snapshot deleted within %s", cfg.Timeout)
	}
	var calls struct {
		QuotaErrorsByProject map[string]int                       `json:"QuotaErrorsByProject"`
		QuotaErrorsByCaller  map[string]map[string]map[string]int `json:"QuotaErrorsByCaller"`
	}
	if err := getJSON(ctx, fakeURL+"/fake/calls", &calls); err != nil {
		return nil, fmt.Errorf("read the fake's calls: %w", err)
	}
	stopPush()
	pushWG.Wait()
	logf("events: %s; cleanups: %s (by subscription: %s)", evPush.stats(), clPush.stats(), clPush.byRoute())

	res := &BenchResult{Name: cfg.Name, Instances: cfg.Instances, Rate: cfg.Rate, Tasks: len(tasks)}
	for _, p := range cfg.Projects {
		f := projectFigures(p, facts[p.ID], calls.QuotaErrorsByProject[p.ID], cfg.Instances)
		f.WorstInstanceMinute, f.WorstAt = worstInstanceMinute(calls.QuotaErrorsByCaller, p.ID)
		res.Projects = append(res.Projects, f)
	}
	var lat []time.Duration
	for _, tk := range tasks {
		var last time.Time
		for _, sn := range tk.snaps {
			fc := facts[tk.project][sn]
			if fc.Exists || fc.DeletedAt.IsZero() {
				last = time.Time{}
				break
			}
			last = maxTime(last, fc.DeletedAt)
		}
		if !last.IsZero() {
			lat = append(lat, last.Sub(tk.completedAt))
		}
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		res.LatencyP50, res.LatencyP99, res.LatencyMax = lat[n/2], lat[min(n*99/100, n-1)], lat[n-1]
	}
	res.DurationS = time.Since(start).Seconds()
	if !done {
		return res, errors.New("not every snapshot was deleted in time")
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	_ = os.WriteFile(filepath.Join(cfg.LogDir, "bench.json"), b, 0o644)
	return res, nil
}

// projectFigures sums one project's deletions up by synchronized minute.
func projectFigures(p BenchProject, facts map[string]fakeFacts, quotaErrors, instances int) ProjectFigures {
	f := ProjectFigures{BenchProject: p, QuotaErrors: quotaErrors}
	var times []time.Time
	for _, fc := range facts {
		if !fc.Exists && !fc.DeletedAt.IsZero() {
			times = append(times, fc.DeletedAt)
		}
	}
	slices.SortFunc(times, time.Time.Compare)
	f.Deleted = len(times)
	if len(times) == 0 {
		return f
	}
	f.FirstDelete, f.LastDelete = times[0], times[len(times)-1]
	if d := f.LastDelete.Sub(f.FirstDelete).Seconds(); d > 0 {
		f.TopSpeed = float64(len(times)-1) / d
	}
	minutes := max(f.LastDelete.Sub(f.FirstDelete).Minutes(), 1)
	f.QuotaErrorsPerInstanceMinute = float64(quotaErrors) / float64(instances) / minutes
	if p.QuotaPerMinute <= 0 {
		return f
	}
	var sum int
	for m := f.FirstDelete.Truncate(time.Minute).Add(time.Minute); m.Add(time.Minute).Before(f.LastDelete); m = m.Add(time.Minute) {
		n := 0
		for _, t := range times {
			if !t.Before(m) && t.Before(m.Add(time.Minute)) {
				n++
			}
		}
		f.Minutes = append(f.Minutes, MinuteFigure{Minute: m.UTC().Format("15:04"), Deleted: n, Ratio: float64(n) / float64(p.QuotaPerMinute)})
		sum += n
	}
	if len(f.Minutes) > 0 {
		f.QuotaRatio = float64(sum) / float64(len(f.Minutes)*p.QuotaPerMinute)
	}
	return f
}

// worstInstanceMinute returns the most quota errors one caller (serve
// instance) got in project in one synchronized minute, from the fake's
// counts by caller, project and minute ("2006-01-02T15:04Z"), and where
// ("serve-1 10:41"). Ties go to the first instance and minute in order.
func worstInstanceMinute(byCaller map[string]map[string]map[string]int, project string) (int, string) {
	worst, at := 0, ""
	for _, caller := range slices.Sorted(maps.Keys(byCaller)) {
		byMinute := byCaller[caller][project]
		for _, minute := range slices.Sorted(maps.Keys(byMinute)) {
			if n := byMinute[minute]; n > worst {
				label := minute
				if t, err := time.Parse("2006-01-02T15:04Z", minute); err == nil {
					label = t.Format("15:04")
				}
				worst, at = n, caller+" "+label
			}
		}
	}
	return worst, at
}

var benchSeq struct {
	sync.Mutex
	n int
}

// benchEvent encodes ev with a fresh id and the current time.
func benchEvent(ev events.Event) []byte {
	benchSeq.Lock()
	benchSeq.n++
	ev.ID = "bench-" + strconv.Itoa(benchSeq.n)
	benchSeq.Unlock()
	ev.Time = time.Now().UTC()
	if err := ev.Validate(); err != nil {
		panic(fmt.Sprintf("chaos: generated an invalid event: %v", err))
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

func publishAll(ctx context.Context, pub *pubsub.Publisher, data [][]byte) error {
	results := make([]*pubsub.PublishResult, 0, len(data))
	for _, d := range data {
		var ev struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(d, &ev)
		results = append(results, pub.Publish(ctx, &pubsub.Message{Data: d, Attributes: map[string]string{"eventType": ev.Type}}))
	}
	for _, r := range results {
		if _, err := r.Get(ctx); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	return nil
}

// seedSnapshots creates every task's snapshots in the fake, labelled with
// the task's session.
func seedSnapshots(ctx context.Context, fakeURL string, tasks []*benchTask) error {
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, tk := range tasks {
		for _, sn := range tk.snaps {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := postJSON(ctx, fakeURL+"/fake/snapshots", map[string]any{"project": tk.project, "name": sn,
					"labels": map[string]string{labelKey: tk.session}}, nil); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readFacts reads the fake's per-snapshot facts of each project, by name.
func readFacts(ctx context.Context, fakeURL string, projects []string) (map[string]map[string]fakeFacts, error) {
	out := map[string]map[string]fakeFacts{}
	for _, p := range projects {
		var rows []fakeFacts
		if err := getJSON(ctx, fakeURL+"/fake/snapshots?project="+p, &rows); err != nil {
			return nil, err
		}
		out[p] = map[string]fakeFacts{}
		for _, r := range rows {
			out[p][r.Name] = r
		}
	}
	return out, nil
}

// waitFor polls cond every 500 ms until it holds or d passes.
func waitFor(ctx context.Context, d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) || !sleepUntil(ctx, time.Now().Add(500*time.Millisecond)) {
			return false
		}
	}
	return true
}

// PeerResult is what the peer tool did on the same fake and quota.
type PeerResult struct {
	Command   string  `json:"command"`
	Snapshots int     `json:"snapshots"`
	Deleted   int     `json:"deleted"`
	ExitCode  int     `json:"exitCode"`
	DurationS float64 `json:"durationSeconds"`
	// DeleteCalls and QuotaErrors as the fake counted them.
	DeleteCalls int    `json:"deleteCalls"`
	QuotaErrors int    `json:"quotaErrors"`
	LastLine    string `json:"lastLine"`
}

// Peer deletes p's snapshots with `gcloud compute snapshots delete` on
// the same fake and quota as the benchmark, the way an operator would
// without snapsweep: one command naming every snapshot. gcloud sends the
// deletes in batch requests (POST /batch/compute/v1), each inner call
// counted against the quota, and gives up on the first errors.
func Peer(ctx context.Context, bin, logDir string, p BenchProject) (*PeerResult, error) {
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	gcloud, err := exec.LookPath("gcloud")
	if err != nil {
		return nil, fmt.Errorf("the peer needs gcloud: %w", err)
	}
	fake, fakeURL, err := startFake(ctx, bin, logDir, "--latency", "200ms", "--quota", "0")
	if err != nil {
		return nil, err
	}
	defer fake.stop(5 * time.Second)
	if err := postJSON(ctx, fakeURL+"/fake/quota", map[string]any{"project": p.ID, "group": "writes", "perMinute": p.QuotaPerMinute}, nil); err != nil {
		return nil, err
	}
	tk := &benchTask{project: p.ID, session: "bench-peer"}
	for i := range p.Snapshots {
		tk.snaps = append(tk.snaps, fmt.Sprintf("snap-%d", i))
	}
	if err := seedSnapshots(ctx, fakeURL, []*benchTask{tk}); err != nil {
		return nil, err
	}
	cfgDir, err := os.MkdirTemp("", "snapsweep-peer-gcloud-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(cfgDir)
	args := append([]string{"compute", "snapshots", "delete"}, tk.snaps...)
	args = append(args, "--project", p.ID, "--quiet")
	cmd := exec.CommandContext(ctx, gcloud, args...)
	cmd.Env = append(os.Environ(),
		"CLOUDSDK_CONFIG="+cfgDir,
		"CLOUDSDK_API_ENDPOINT_OVERRIDES_COMPUTE="+fakeURL+"/compute/v1/",
		"CLOUDSDK_AUTH_ACCESS_TOKEN=fake-token", // the fake takes any token
		"CLOUDSDK_CORE_DISABLE_PROMPTS=1")
	out, _ := os.Create(filepath.Join(logDir, "gcloud.log"))
	defer out.Close()
	var last bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.MultiWriter(out, &last), io.MultiWriter(out, &last)
	t0 := time.Now()
	runErr := cmd.Run()
	res := &PeerResult{Command: fmt.Sprintf("gcloud compute snapshots delete <%d names> --project %s --quiet", p.Snapshots, p.ID),
		Snapshots: p.Snapshots, DurationS: time.Since(t0).Seconds(), ExitCode: cmd.ProcessState.ExitCode()}
	if runErr != nil && res.ExitCode < 0 {
		return nil, runErr
	}
	lines := strings.Split(strings.TrimSpace(last.String()), "\n")
	res.LastLine = lines[len(lines)-1]
	facts, err := readFacts(ctx, fakeURL, []string{p.ID})
	if err != nil {
		return nil, err
	}
	for _, fc := range facts[p.ID] {
		if !fc.Exists {
			res.Deleted++
		}
	}
	var st computeStats
	if err := getJSON(ctx, fakeURL+"/fake/calls", &st); err != nil {
		return nil, err
	}
	res.DeleteCalls, res.QuotaErrors = st.ByMethod["snapshots.delete"], st.QuotaErrors
	return res, nil
}
