package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/bus"
	"github.com/snapsweep/snapsweep/cleanup"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/lifecycle"
	"github.com/snapsweep/snapsweep/service"
	"github.com/snapsweep/snapsweep/status"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
	"github.com/snapsweep/snapsweep/telemetry"
)

// cleanupCommand is `snapsweep cleanup task|session`: a manual cleanup.
func cleanupCommand(deps Deps) *cobra.Command {
	group := &cobra.Command{
		Use:   "cleanup",
		Short: "Ask for the cleanup of a task's or a session's snapshots (dry run unless --yes)",
		Long: `Manual cleanup: schedule the deletion of the snapshots of one task or of a
whole session, with reason "manual". Without --yes it only prints what would be
scheduled and why the rest is skipped; with --yes it claims each eligible
snapshot and publishes its cleanup message, exactly as the service does.

Every rule of the contract still applies: a running task's snapshots are not
deleted before they expire, a failed task's not before the failed-task
retention ends, held and refused snapshots never, and the cleanup handler
checks the ownership label again right before it deletes. A manual cleanup
also retries snapshots whose deletion failed.`,
		Args: cobra.NoArgs,
	}
	for _, scope := range []string{"task", "session"} {
		var session, task string
		var yes bool
		cmd := &cobra.Command{
			Use:   scope,
			Short: "Clean up the snapshots of one " + scope,
			Args:  cobra.NoArgs,
		}
		if scope == "task" {
			cmd.Example = `  snapsweep cleanup task --session wave-7 --task vm-12          # what would happen
  snapsweep cleanup task --session wave-7 --task vm-12 --yes    # do it`
		} else {
			cmd.Example = `  snapsweep cleanup session --session wave-7
  snapsweep cleanup session --session wave-7 --yes -o json`
		}
		o := newOpsOptions(cmd, deps)
		o.addCleanupTopic(cmd)
		cmd.Flags().StringVar(&session, "session", "", "session id (required)")
		_ = cmd.RegisterFlagCompletionFunc("session", completer{o}.sessions)
		if scope == "task" {
			cmd.Flags().StringVar(&task, "task", "", "task id (required)")
			_ = cmd.RegisterFlagCompletionFunc("task", completer{o}.tasks)
		}
		cmd.Flags().BoolVar(&yes, "yes", false, "act: publish the cleanup messages (default: only show what would happen)")
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			if err := o.check(cmd); err != nil {
				return err
			}
			var missing []string
			if session == "" {
				missing = append(missing, "--session")
			}
			if scope == "task" && task == "" {
				missing = append(missing, "--task")
			}
			if len(missing) > 0 {
				return UsageError(cmd, "missing %s", strings.Join(missing, ", "))
			}
			if !events.ValidSessionID(session) {
				return UsageError(cmd, "--session %q is not a valid session id (%s)", session, sessionIDRule)
			}
			if scope == "task" && !events.ValidTaskID(task) {
				return UsageError(cmd, "--task %q is not a valid task id (%s)", task, taskIDRule)
			}
			return o.manualCleanup(cmd, session, task, yes)
		}
		group.AddCommand(cmd)
	}
	return group
}

// plannedCleanup is what a manual cleanup does with one snapshot.
type plannedCleanup struct {
	Snapshot string      `json:"snapshot"`
	TaskID   string      `json:"taskId,omitempty"`
	State    store.State `json:"state"`
	// Action is schedule, republish (already cleanup_pending) or skip.
	Action string `json:"action"`
	Why    string `json:"why"`
}

// CleanupResult is the output of `snapsweep cleanup`.
type CleanupResult struct {
	Session   string           `json:"session"`
	Task      string           `json:"task,omitempty"`
	DryRun    bool             `json:"dryRun"`
	Plan      []plannedCleanup `json:"plan"`
	Published int              `json:"published"`
	Skipped   map[string]int   `json:"skipped,omitempty"`
}

func (o *opsOptions) manualCleanup(cmd *cobra.Command, session, task string, yes bool) error {
	ctx := cmd.Context()
	cfg, reg, done, err := o.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	q := store.Query{SessionID: session, TaskID: task, States: store.LiveStates(), Limit: 300}
	var snaps []store.Snapshot
	for {
		page, err := reg.ListSnapshots(ctx, q)
		if err != nil {
			return fmt.Errorf("list snapshots: %w", err)
		}
		snaps = append(snaps, page.Snapshots...)
		if page.Next == "" {
			break
		}
		q.After = page.Next
	}
	if len(snaps) == 0 {
		// A typo is an error, not "nothing to do".
		if err := o.unknownIDs(ctx, reg, session, task); err != nil {
			return err
		}
	}
	policy := cfg.Policy()
	now := o.deps.Now().UTC()
	tasks := map[string]*store.Task{}
	res := CleanupResult{Session: session, Task: task, DryRun: !yes, Plan: []plannedCleanup{}}
	var act []store.Snapshot
	for _, s := range snaps {
		t, ok := tasks[s.TaskID]
		if !ok && s.TaskID != "" {
			t, err = reg.GetTask(ctx, s.TaskKey())
			if errors.Is(err, store.ErrNotFound) {
				t, err = nil, nil
			}
			if err != nil {
				return fmt.Errorf("read task %s: %w", s.TaskID, err)
			}
			tasks[s.TaskID] = t
		}
		p := plannedCleanup{Snapshot: s.Key().String(), TaskID: s.TaskID, State: s.State}
		p.Action, p.Why = cleanup.Plan(policy, &s, t, events.ReasonManual, now)
		res.Plan = append(res.Plan, p)
		if p.Action != "skip" {
			act = append(act, s)
		}
	}
	w := cmd.OutOrStdout()
	if !yes {
		if o.json() {
			return o.write(w, res)
		}
		printPlan(w, res.Plan)
		fmt.Fprintf(cmd.ErrOrStderr(), "dry run: %d of %d live snapshots would get a cleanup message (reason manual); nothing was published. Run again with --yes to act.\n",
			len(act), len(res.Plan))
		return nil
	}
	if len(act) == 0 {
		if o.json() {
			return o.write(w, res)
		}
		printPlan(w, res.Plan)
		fmt.Fprintln(w, "nothing to schedule: no live snapshot is eligible")
		return nil
	}
	ps, err := o.deps.OpenPubSub(ctx, cfg.Project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer ps.Close()
	// The publisher's calls run on its own goroutines: the whole publishing
	// is one wait on Pub/Sub.
	endWait := waitsFrom(ctx).begin(o.pubsubEndpoint(cfg.Project, cfg.CleanupTopic))
	pub := bus.NewPublisher(ps, cfg.CleanupTopic)
	defer pub.Stop()
	sched := &cleanup.Scheduler{Store: reg, Publisher: pub, Policy: policy, Now: o.deps.Now}
	bar := newProgress(cmd.ErrOrStderr(), o.deps.Terminal(cmd.ErrOrStderr()), "publishing cleanup messages", len(act))
	res.Skipped = map[string]int{}
	var errs []error
	for batch := range slices.Chunk(act, 20) {
		r, err := sched.Schedule(ctx, batch, events.ReasonManual)
		res.Published += r.Published
		for k, v := range r.Skipped {
			res.Skipped[k] += v
		}
		if err != nil {
			errs = append(errs, err)
		}
		bar.add(len(batch))
	}
	endWait(errors.Join(errs...))
	bar.finish()
	if o.json() {
		if err := o.write(w, res); err != nil {
			return err
		}
	} else {
		printPlan(w, res.Plan)
		fmt.Fprintf(w, "published %d cleanup messages to %s (reason manual)", res.Published, cfg.CleanupTopic)
		if len(res.Skipped) > 0 {
			fmt.Fprintf(w, "; skipped at claim time: %s", formatCounts(res.Skipped))
		}
		fmt.Fprintln(w)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("some cleanup messages were not published (their claims were rolled back): %w", err)
	}
	return nil
}

func printPlan(w io.Writer, plan []plannedCleanup) {
	tw := NewTable(w)
	fmt.Fprintln(tw, "SNAPSHOT\tTASK\tSTATE\tACTION\tWHY")
	for _, p := range plan {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Snapshot, Dash(p.TaskID), p.State, p.Action, clip(p.Why, 70))
	}
	tw.Flush()
	if len(plan) == 0 {
		fmt.Fprintln(w, "no live snapshots")
	}
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// sweepCommand is `snapsweep sweep`.
func sweepCommand(deps Deps) *cobra.Command {
	var dryRun bool
	var serviceURL string
	cmd := &cobra.Command{
		Use:   "sweep",
		Short: "Run a sweep now: health checks, expired, over-threshold and stuck snapshots, orphans",
		Long: `Run one sweep, the one Cloud Scheduler triggers: in this process against the
registry, Pub/Sub and Compute (the service's configuration from the
environment and flags), or, with --url, on a running service through
POST /scheduler/sweep. A sweep never schedules more than
SNAPSWEEP_MAX_DELETES_PER_SWEEP cleanups and never breaks the retention rules.
With --dry-run it reports what it would do and changes nothing.

Exit code 1 when the sweep did not run (another sweep holds the lease), hit
errors, or reported failing health checks.`,
		Example: `  snapsweep sweep --dry-run
  snapsweep sweep --project my-proj
  snapsweep sweep --url http://127.0.0.1:8080 -o json   # a local service, or through 'gcloud run services proxy'`,
		Args: cobra.NoArgs,
	}
	o := newOpsOptions(cmd, deps)
	o.addCleanupTopic(cmd)
	o.addCompute(cmd)
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "report what the sweep would do; change nothing")
	cmd.Flags().StringVar(&serviceURL, "url", "", "base URL of a running service (http only; for Cloud Run use 'gcloud run services proxy')")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		// With --url the service brings its own project and registry.
		o.remote = serviceURL != ""
		if err := o.check(cmd); err != nil {
			return err
		}
		ctx := cmd.Context()
		var rep *sweep.Report
		var err error
		bar := newSpinner(cmd.ErrOrStderr(), o.deps.Terminal(cmd.ErrOrStderr()), "sweeping")
		if serviceURL != "" {
			rep, err = o.remoteSweep(ctx, cmd, serviceURL, dryRun)
		} else {
			rep, err = o.localSweep(ctx, dryRun)
		}
		bar.stop()
		if err != nil && rep == nil {
			return err
		}
		if o.json() {
			if werr := o.write(cmd.OutOrStdout(), rep); werr != nil {
				return werr
			}
		} else {
			printSweep(cmd.OutOrStdout(), rep)
		}
		switch {
		case err != nil:
			return err
		case rep.Skipped != "":
			return &exitError{"sweep did not run: " + rep.Skipped}
		case len(rep.Errors) > 0:
			return &exitError{fmt.Sprintf("sweep finished with %d errors", len(rep.Errors))}
		case rep.Status == sweep.Failing:
			return &exitError{"sweep reported failing health checks"}
		}
		return nil
	}
	return cmd
}

// serviceClient accepts a plain-http base URL and returns its client.
func (o *opsOptions) serviceClient(cmd *cobra.Command, raw string) (*status.Client, error) {
	c, err := status.NewClient(raw, o.deps.HTTP)
	if err != nil {
		return nil, UsageError(cmd, "--url %q: want the service's base URL, e.g. http://127.0.0.1:8080", raw)
	}
	if c.URL.Scheme == "https" {
		return nil, UsageError(cmd, "--url %q: https (Cloud Run with an identity token) is not supported yet; run 'gcloud run services proxy SERVICE --port 8080' and use --url http://127.0.0.1:8080", raw)
	}
	return c, nil
}

// remoteSweep asks a running service for a sweep.
func (o *opsOptions) remoteSweep(ctx context.Context, cmd *cobra.Command, raw string, dryRun bool) (*sweep.Report, error) {
	c, err := o.serviceClient(cmd, raw)
	if err != nil {
		return nil, err
	}
	end := waitsFrom(ctx).begin("the service at " + c.URL.Host)
	var rep sweep.Report
	err = c.Sweep(ctx, dryRun, &rep)
	end(err)
	var he *status.HTTPError
	if errors.As(err, &he) {
		var failed struct {
			Report *sweep.Report `json:"report"`
		}
		if json.Unmarshal(he.Body, &failed) == nil {
			return failed.Report, err
		}
	}
	if err != nil {
		return nil, err
	}
	return &rep, nil
}

// localSweep runs a sweep in this process with the service's own wiring
// (service.NewComponents builds the sweeper; nothing listens).
func (o *opsOptions) localSweep(ctx context.Context, dryRun bool) (*sweep.Report, error) {
	cfg, reg, done, err := o.open(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	ps, err := o.deps.OpenPubSub(ctx, cfg.Project)
	if err != nil {
		return nil, fmt.Errorf("pubsub client: %w", err)
	}
	defer ps.Close()
	quiet := slog.New(slog.DiscardHandler)
	hc, err := o.computeClient(ctx, cfg.ComputeEndpoint)
	if err != nil {
		return nil, err
	}
	c, err := service.NewComponents(ctx, cfg, service.Options{Registry: reg, PubSub: ps, Logger: quiet, ComputeHTTP: hc})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The sweep publishes through Pub/Sub on the publisher's goroutines.
	end := waitsFrom(ctx).begin("the sweep (" + o.pubsubEndpoint(cfg.Project, cfg.CleanupTopic) + ", " + computeEndpoint(cfg.ComputeEndpoint) + ")")
	rep, err := c.Sweeper.Run(telemetry.WithLogger(ctx, quiet), dryRun, "")
	end(err)
	return rep, err
}

func printSweep(w io.Writer, rep *sweep.Report) {
	tw := NewTable(w)
	mode := ""
	if rep.DryRun {
		mode = " (dry run)"
	}
	fmt.Fprintf(tw, "sweep\t%s%s\n", rep.RunID, mode)
	if rep.Skipped != "" {
		fmt.Fprintf(tw, "skipped\t%s\n", rep.Skipped)
		tw.Flush()
		return
	}
	fmt.Fprintf(tw, "status\t%s (%d ms, %d registry reads)\n", rep.Status, rep.DurationMs, rep.Reads)
	fmt.Fprintf(tw, "expired\tfound %d, scheduled %d%s\n", rep.Expired.Found, rep.Expired.Scheduled, skippedNote(rep.Expired.Skipped))
	fmt.Fprintf(tw, "threshold\t%d live of at most %d, scheduled %d, protected %d\n", rep.Threshold.Live, rep.Threshold.Max, rep.Threshold.Scheduled, rep.Threshold.Protected)
	fmt.Fprintf(tw, "stuck\tpending %d, deleting %d, re-driven %d, confirmed deleted %d\n", rep.Stuck.Pending, rep.Stuck.Deleting, rep.Stuck.Redriven, rep.Stuck.ConfirmedDeleted)
	fmt.Fprintf(tw, "orphans\tfound %d, adopted %d, vanished %d\n", rep.Orphans.Found, rep.Orphans.Adopted, rep.Orphans.Vanished)
	fmt.Fprintf(tw, "cap\t%d cleanups used of %d, %d deferred to the next sweep\n", rep.Used, rep.Cap, rep.Deferred)
	for _, e := range rep.Errors {
		fmt.Fprintf(tw, "error\t%s\n", e)
	}
	tw.Flush()
	printChecks(w, rep.Checks)
}

func skippedNote(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	return " (skipped: " + formatCounts(m) + ")"
}

func printChecks(w io.Writer, checks []sweep.Check) {
	if len(checks) == 0 {
		return
	}
	tw := NewTable(w)
	fmt.Fprintln(tw, "CHECK\tSTATUS\tREASON")
	for _, c := range checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Name, c.Status, clip(Dash(c.Reason), 90))
	}
	tw.Flush()
}

// spinner shows that a long call is running, on a terminal only.
type spinner struct {
	stopc chan struct{}
	done  chan struct{}
}

func newSpinner(w io.Writer, tty bool, what string) *spinner {
	s := &spinner{stopc: make(chan struct{}), done: make(chan struct{})}
	if !tty {
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		start := time.Now()
		frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-s.stopc:
				fmt.Fprint(w, "\r\033[K")
				return
			case <-t.C:
				fmt.Fprintf(w, "\r\033[K%s %s %.1fs", frames[i%len(frames)], what, time.Since(start).Seconds())
			}
		}
	}()
	return s
}

func (s *spinner) stop() {
	select {
	case <-s.done:
	default:
		close(s.stopc)
		<-s.done
	}
}

// healthCommand is `snapsweep health`.
func healthCommand(deps Deps) *cobra.Command {
	var last int
	var serviceURL string
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Show the latest stored health report(s); exit 1 if the latest is failing",
		Long: `Show the health reports the sweeps stored (newest first): every check with its
status and reason. With --url, ask a running service (GET /status) for its
latest report, breaker state and counts instead.

Exit code 0 when the latest report is ok or degraded, 1 when it is failing or
there is none yet.`,
		Example: `  snapsweep health
  snapsweep health --last 5
  snapsweep health --url http://127.0.0.1:8080 -o json`,
		Args: cobra.NoArgs,
	}
	o := newOpsOptions(cmd, deps)
	cmd.Flags().IntVar(&last, "last", 1, "show this many reports")
	cmd.Flags().StringVar(&serviceURL, "url", "", "base URL of a running service (http only)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o.remote = serviceURL != ""
		if err := o.check(cmd); err != nil {
			return err
		}
		if last <= 0 {
			return UsageError(cmd, "--last must be positive")
		}
		ctx := cmd.Context()
		var records []store.HealthRecord
		var st0 *status.Report
		if serviceURL != "" {
			st, err := o.remoteStatus(ctx, cmd, serviceURL)
			if err != nil {
				return err
			}
			st0 = st
			if st.Health != nil {
				records = []store.HealthRecord{{At: st.Health.At, Status: st.Health.Status, Report: string(st.Health.Report)}}
			}
			if last > 1 {
				fmt.Fprintf(cmd.ErrOrStderr(), "a service's /status has only its latest report; for the last %d, leave out --url (the registry has them)\n", last)
			}
		} else {
			reg, done, err := o.registry(ctx)
			if err != nil {
				return err
			}
			defer done()
			records, err = reg.LatestHealth(ctx, last)
			if err != nil {
				return fmt.Errorf("read health reports: %w", err)
			}
		}
		type shown struct {
			At      time.Time     `json:"at"`
			Status  string        `json:"status"`
			Report  *sweep.Report `json:"report,omitempty"`
			Invalid string        `json:"invalid,omitempty"`
		}
		out := make([]shown, 0, len(records))
		for _, h := range records {
			s := shown{At: h.At, Status: h.Status}
			var rep sweep.Report
			if err := json.Unmarshal([]byte(h.Report), &rep); err != nil {
				s.Invalid = "stored report is not readable: " + err.Error()
			} else {
				s.Report = &rep
			}
			out = append(out, s)
		}
		w := cmd.OutOrStdout()
		if o.json() {
			v := map[string]any{"reports": out}
			if st0 != nil {
				v["breaker"], v["counts"], v["dryRun"], v["version"] = st0.Breaker, st0.Counts, st0.DryRun, st0.Version
			}
			if err := o.write(w, v); err != nil {
				return err
			}
		} else {
			if st0 != nil {
				fmt.Fprintf(w, "service %s, version %s, breaker %s, dry run %v\n", serviceURL, st0.Version, st0.Breaker, st0.DryRun)
			}
			for i, s := range out {
				if i > 0 {
					fmt.Fprintln(w)
				}
				fmt.Fprintf(w, "health report of %s (%s ago): %s\n", When(s.At), age(o.deps.Now(), s.At), strings.ToUpper(s.Status))
				if s.Report != nil {
					printChecks(w, s.Report.Checks)
				} else {
					fmt.Fprintln(w, s.Invalid)
				}
			}
		}
		switch {
		case len(out) == 0:
			return &exitError{"no health report stored yet: the first sweep writes one (run `snapsweep sweep`)"}
		case out[0].Status == string(sweep.Failing):
			return &exitError{fmt.Sprintf("the latest health report (%s) is failing", When(out[0].At))}
		}
		return nil
	}
	return cmd
}

// remoteStatus reads GET /status of a running service.
func (o *opsOptions) remoteStatus(ctx context.Context, cmd *cobra.Command, raw string) (*status.Report, error) {
	c, err := o.serviceClient(cmd, raw)
	if err != nil {
		return nil, err
	}
	end := waitsFrom(ctx).begin("the service at " + c.URL.Host)
	st, err := c.Status(ctx)
	end(err)
	return st, err
}

// holdCommand is `snapsweep hold PROJECT/NAME`.
func holdCommand(deps Deps) *cobra.Command {
	var reason, by string
	cmd := &cobra.Command{
		Use:   "hold PROJECT/NAME",
		Short: "Put a snapshot on hold: nothing deletes it until it is released",
		Long: `Put a registered snapshot on hold (state held): no event, sweep or manual
cleanup deletes it until 'snapsweep release'. Holding is safe and needs no
--yes. A snapshot that is being deleted or already deleted cannot be held.`,
		Example: `  snapsweep hold my-proj/wave-7-vm-12-boot --reason "INC-4411: keep for forensics"
  snapsweep hold my-proj/wave-7-vm-12-boot --reason "rollback test" --by alice -o json`,
		Args: cobra.ExactArgs(1),
	}
	o := newOpsOptions(cmd, deps)
	cmd.ValidArgsFunction = completer{o}.snapshotKeys
	cmd.Flags().StringVar(&reason, "reason", "", "why (required; shown to everyone who looks)")
	cmd.Flags().StringVar(&by, "by", "", "who holds it (default $USER)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := o.check(cmd); err != nil {
			return err
		}
		key, err := parseKey(cmd, args[0])
		if err != nil {
			return err
		}
		if strings.TrimSpace(reason) == "" {
			return UsageError(cmd, "--reason is required")
		}
		if by == "" {
			by = o.env("USER", "operator")
		}
		ctx := cmd.Context()
		cfg, reg, done, err := o.open(ctx)
		if err != nil {
			return err
		}
		defer done()
		at := o.deps.Now().UTC().Truncate(time.Microsecond)
		already := false
		policy := cfg.Policy()
		rec, err := transition(ctx, reg, "hold", key, func(cur *store.Snapshot, _ *store.Task) (*store.Snapshot, error) {
			already = cur != nil && cur.State == store.Held
			return policy.HoldFor(cur, by, reason, at)
		})
		if err != nil {
			return err
		}
		if o.json() {
			return o.write(cmd.OutOrStdout(), rec)
		}
		if already {
			fmt.Fprintf(cmd.OutOrStdout(), "%s was already held by %s: %s (nothing changed)\n", key, rec.HeldBy, rec.HoldReason)
			return nil
		}
		fmt.Fprintf(cmd.OutOrStdout(), "held %s (was %s) by %s: %s\nnothing deletes it until: snapsweep release %s --yes\n",
			key, rec.PrevState, rec.HeldBy, rec.HoldReason, key)
		return nil
	}
	return cmd
}

// releaseCommand is `snapsweep release PROJECT/NAME`.
func releaseCommand(deps Deps) *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "release PROJECT/NAME",
		Short: "Release a held snapshot: it may be deleted again (needs --yes)",
		Long: `Release a snapshot from hold: it returns to the state it had (a pending
cleanup returns to active), and the retention rules decide again when it may
be deleted. Without --yes it only shows what would change.`,
		Example: `  snapsweep release my-proj/wave-7-vm-12-boot          # what would change
  snapsweep release my-proj/wave-7-vm-12-boot --yes`,
		Args: cobra.ExactArgs(1),
	}
	o := newOpsOptions(cmd, deps)
	cmd.ValidArgsFunction = completer{o}.snapshotKeys
	cmd.Flags().BoolVar(&yes, "yes", false, "act (default: only show what would change)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := o.check(cmd); err != nil {
			return err
		}
		key, err := parseKey(cmd, args[0])
		if err != nil {
			return err
		}
		ctx := cmd.Context()
		cfg, reg, done, err := o.open(ctx)
		if err != nil {
			return err
		}
		defer done()
		w := cmd.OutOrStdout()
		if !yes {
			rec, err := reg.GetSnapshot(ctx, key)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("release %s: %w", key, errNoRecord)
			}
			if err != nil {
				return fmt.Errorf("release %s: %w", key, err)
			}
			if rec.State != store.Held {
				return fmt.Errorf("release %s: it is not held (state %s)", key, rec.State)
			}
			if o.json() {
				return o.write(w, map[string]any{"dryRun": true, "snapshot": rec, "releaseTo": lifecycle.ReleaseTo(rec.PrevState)})
			}
			fmt.Fprintf(w, "would release %s: held by %s (%s) → %s\n", key, rec.HeldBy, rec.HoldReason, lifecycle.ReleaseTo(rec.PrevState))
			fmt.Fprintln(cmd.ErrOrStderr(), "dry run: nothing changed. Run again with --yes to release it (it may then be deleted).")
			return nil
		}
		at := o.deps.Now().UTC().Truncate(time.Microsecond)
		var was store.Snapshot
		policy := cfg.Policy()
		rec, err := transition(ctx, reg, "release", key, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
			if cur != nil {
				was = *cur
			}
			return policy.UnholdFor(cur, t, at)
		})
		if err != nil {
			return err
		}
		if o.json() {
			return o.write(w, rec)
		}
		fmt.Fprintf(w, "released %s (held by %s: %s) → %s\n", key, was.HeldBy, was.HoldReason, rec.State)
		if rec.TaskID != "" {
			fmt.Fprintf(w, "the retention rules apply again; to delete it now if they allow: snapsweep cleanup task --session %s --task %q --yes\n", rec.SessionID, rec.TaskID)
		}
		return nil
	}
	return cmd
}

// pubsubEndpoint names the Pub/Sub topic a command publishes to, for messages.
func (o *opsOptions) pubsubEndpoint(project, topic string) string {
	if h := o.env("PUBSUB_EMULATOR_HOST", ""); h != "" {
		return fmt.Sprintf("the Pub/Sub emulator at %s (topic %s of project %s)", h, topic, project)
	}
	return fmt.Sprintf("Pub/Sub (pubsub.googleapis.com, topic %s of project %s)", topic, project)
}

// transition runs an operator's lifecycle transition (fn) on a record in a
// registry transaction. A transition that refuses (fn's error) changes
// nothing and is reported as the command's failure, as is a record that
// does not exist (errNoRecord).
func transition(ctx context.Context, reg store.Registry, verb string, key store.Key, fn store.SnapshotFunc) (*store.Snapshot, error) {
	var refused error
	rec, err := reg.UpdateSnapshot(ctx, key, store.TaskKey{}, func(cur *store.Snapshot, t *store.Task) (*store.Snapshot, error) {
		next, err := fn(cur, t)
		refused = err
		if errors.Is(err, store.ErrNotFound) {
			refused = errNoRecord
		}
		return next, nil
	})
	if err == nil {
		err = refused
	}
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", verb, key, err)
	}
	return rec, nil
}
