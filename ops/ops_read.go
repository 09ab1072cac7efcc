package ops

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/api/option"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/gce"
	"github.com/snapsweep/snapsweep/service"
	"github.com/snapsweep/snapsweep/status"
	"github.com/snapsweep/snapsweep/store"
	"github.com/snapsweep/snapsweep/sweep"
)

// snapshotsCommand is `snapsweep snapshots list`.
func snapshotsCommand(deps Deps) *cobra.Command {
	group := &cobra.Command{
		Use:   "snapshots",
		Short: "Inspect registered snapshots",
		Args:  cobra.NoArgs,
	}
	var (
		session, task string
		states        []string
		olderThan     time.Duration
		limit         int
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "List registered snapshots, filtered by session, task, state and age",
		Long: `List registered snapshots, newest filters first. Every listing runs as one of
the registry's declared query shapes (an indexed Firestore query); a filter
combination without its own index (--session with --state and --older-than) is
narrowed by the index and finished here.`,
		Example: `  snapsweep snapshots list --session wave-7
  snapsweep snapshots list --state failed,refused
  snapsweep snapshots list --session wave-7 --task vm-12 -o json
  snapsweep snapshots list --state retained --older-than 168h --limit 0`,
		Args: cobra.NoArgs,
	}
	o := newOpsOptions(list, deps)
	fl := list.Flags()
	fl.StringVar(&session, "session", "", "only this session's snapshots")
	fl.StringVar(&task, "task", "", "only this task's snapshots (needs --session)")
	fl.StringSliceVar(&states, "state", nil, "only these states (comma list or repeated): "+stateNames())
	fl.DurationVar(&olderThan, "older-than", 0, "only snapshots created more than this long ago (e.g. 72h)")
	fl.IntVar(&limit, "limit", 100, "at most this many (0: all)")
	comp := completer{o}
	_ = list.RegisterFlagCompletionFunc("session", comp.sessions)
	_ = list.RegisterFlagCompletionFunc("task", comp.tasks)
	_ = list.RegisterFlagCompletionFunc("state", comp.states)
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := o.check(cmd); err != nil {
			return err
		}
		q := store.Query{SessionID: session, TaskID: task}
		for _, s := range states {
			st := store.State(strings.TrimSpace(s))
			if !slices.Contains(store.States(), st) {
				return UsageError(cmd, "--state %q: want one of %s", s, stateNames())
			}
			q.States = append(q.States, st)
		}
		if task != "" && session == "" {
			return UsageError(cmd, "--task needs --session (task ids are unique only within a session)")
		}
		if session != "" && !events.ValidSessionID(session) {
			return UsageError(cmd, "--session %q is not a valid session id (%s)", session, sessionIDRule)
		}
		if cmd.Flags().Changed("task") && !events.ValidTaskID(task) {
			return UsageError(cmd, "--task %q is not a valid task id (%s)", task, taskIDRule)
		}
		if olderThan < 0 || limit < 0 {
			return UsageError(cmd, "--older-than and --limit must not be negative")
		}
		var bound time.Time
		if olderThan > 0 {
			bound = o.deps.Now().Add(-olderThan).UTC()
			q.CreatedBefore = bound
		} else if len(q.States) == 0 {
			q.OrderByCreated = true
		}
		filterAge := false
		if _, err := q.Shape(); err != nil && !q.CreatedBefore.IsZero() {
			// No index for this combination: let the index narrow by the
			// equality filters and check the age here.
			q.CreatedBefore, filterAge = time.Time{}, true
		}
		if _, err := q.Shape(); err != nil {
			return UsageError(cmd, "%v", err)
		}
		ctx := cmd.Context()
		reg, done, err := o.registry(ctx)
		if err != nil {
			return err
		}
		defer done()
		// Read one more than asked for, to know whether more match.
		var out []store.Snapshot
		for {
			q.Limit = 300
			if limit > 0 && !filterAge {
				q.Limit = min(300, limit+1-len(out))
			}
			page, err := reg.ListSnapshots(ctx, q)
			if err != nil {
				return fmt.Errorf("list snapshots: %w", err)
			}
			for _, s := range page.Snapshots {
				if !filterAge || !s.CreatedAt.After(bound) {
					out = append(out, s)
				}
			}
			if page.Next == "" || (limit > 0 && len(out) > limit) {
				break
			}
			q.After = page.Next
		}
		more := limit > 0 && len(out) > limit
		if more {
			out = out[:limit]
		}
		if len(out) == 0 {
			if err := o.unknownIDs(ctx, reg, session, task); err != nil {
				return err
			}
		}
		if o.json() {
			if out == nil {
				out = []store.Snapshot{}
			}
			return o.write(cmd.OutOrStdout(), struct {
				Snapshots []store.Snapshot `json:"snapshots"`
				More      bool             `json:"more"`
			}{out, more})
		}
		now := o.deps.Now()
		tw := NewTable(cmd.OutOrStdout())
		fmt.Fprintln(tw, "SNAPSHOT\tSESSION\tTASK\tSTATE\tAGE\tUPDATED\tNOTE")
		for _, s := range out {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Key(), s.SessionID, Dash(s.TaskID), s.State,
				age(now, s.CreatedAt), When(s.UpdatedAt), clip(snapshotNote(s), 60))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		switch {
		case len(out) == 0:
			fmt.Fprintln(cmd.ErrOrStderr(), "no snapshots match")
		case more:
			fmt.Fprintf(cmd.ErrOrStderr(), "showing the first %d; more match (raise --limit, 0 for all)\n", limit)
		}
		return nil
	}
	group.AddCommand(list)
	return group
}

// unknownIDs checks, for a listing that found nothing, that the session
// and task it filters on exist: a typo is an error, not an empty success.
func (o *opsOptions) unknownIDs(ctx context.Context, reg store.Registry, session, task string) error {
	if session == "" {
		return nil
	}
	if n, err := reg.CountSnapshots(ctx, store.Query{SessionID: session, States: store.States()}); err != nil || n > 0 {
		// The session has snapshots (its record may not be there yet).
		if err != nil {
			return fmt.Errorf("count snapshots: %w", err)
		}
	} else if err := o.checkSession(ctx, reg, session); err != nil {
		return err
	}
	if task == "" {
		return nil
	}
	if n, err := reg.CountSnapshots(ctx, store.Query{SessionID: session, TaskID: task, States: store.States()}); err != nil || n > 0 {
		if err != nil {
			return fmt.Errorf("count snapshots: %w", err)
		}
		return nil
	}
	return o.checkTask(ctx, reg, session, task)
}

// The rules of ids, for usage errors.
const (
	sessionIDRule = "1-63 characters: lower-case letters, digits, - and _, starting with a letter or digit"
	taskIDRule    = "1-256 printable characters"
)

// deletedNote says in words who or what ended a deleted or vanished record
// (its deletedBy: snapsweep, job, already-gone, vanished).
func deletedNote(st store.State, by string) string {
	switch by {
	case "snapsweep":
		return "deleted by snapsweep"
	case "job":
		return "deleted by the migration job (snapshot.deleted)"
	case "already-gone":
		return "already gone when snapsweep came to delete it"
	case "vanished":
		return "gone from Compute without snapsweep deleting it"
	case "":
		if st == store.Vanished {
			return "gone from Compute without snapsweep deleting it"
		}
		return "deleted"
	}
	return "deleted (" + by + ")"
}

func stateNames() string {
	var names []string
	for _, s := range store.States() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

// snapshotNote is the one thing worth knowing about a record's state.
func snapshotNote(s store.Snapshot) string {
	switch {
	case s.State == store.Held:
		return fmt.Sprintf("held by %s: %s (was %s)", s.HeldBy, s.HoldReason, s.PrevState)
	case s.Error != "":
		return s.Error
	case s.State == store.Deleted || s.State == store.Vanished:
		return deletedNote(s.State, s.DeletedBy)
	case s.CleanupReason != "" && (s.State == store.CleanupPending || s.State == store.Deleting):
		return "cleanup: " + s.CleanupReason
	case s.Orphan:
		return "orphan adopted by the sweep"
	case s.State == store.Retained:
		return "kept until " + When(s.ExpiresAt)
	}
	return ""
}

// sessionsCommand is `snapsweep sessions list|show`.
func sessionsCommand(deps Deps) *cobra.Command {
	group := &cobra.Command{
		Use:   "sessions",
		Short: "Inspect migration sessions and their cleanup outcome",
		Args:  cobra.NoArgs,
	}
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List the most recently started sessions",
		Example: `  snapsweep sessions list
  snapsweep sessions list --limit 10 -o json`,
		Args: cobra.NoArgs,
	}
	lo := newOpsOptions(list, deps)
	list.Flags().IntVar(&limit, "limit", 50, "at most this many")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := lo.check(cmd); err != nil {
			return err
		}
		if limit <= 0 {
			return UsageError(cmd, "--limit must be positive")
		}
		ctx := cmd.Context()
		reg, done, err := lo.registry(ctx)
		if err != nil {
			return err
		}
		defer done()
		sessions, err := reg.ListSessions(ctx, limit)
		if err != nil {
			return fmt.Errorf("list sessions: %w", err)
		}
		if lo.json() {
			if sessions == nil {
				sessions = []store.Session{}
			}
			return lo.write(cmd.OutOrStdout(), struct {
				Sessions []store.Session `json:"sessions"`
			}{sessions})
		}
		tw := NewTable(cmd.OutOrStdout())
		fmt.Fprintln(tw, "SESSION\tSTATE\tOUTCOME\tSTARTED\tCOMPLETED\tDELETED\tFAILED")
		for _, s := range sessions {
			// The session record's counts are those its outcome was judged
			// on (set once, at session.completed); count the snapshots now,
			// as sessions show does.
			deleted, err := reg.CountSnapshots(ctx, store.Query{SessionID: s.SessionID, States: []store.State{store.Deleted}})
			if err != nil {
				return fmt.Errorf("count snapshots of %s: %w", s.SessionID, err)
			}
			failed, err := reg.CountSnapshots(ctx, store.Query{SessionID: s.SessionID, States: []store.State{store.Failed, store.Refused}})
			if err != nil {
				return fmt.Errorf("count snapshots of %s: %w", s.SessionID, err)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\n", s.SessionID, s.State, Dash(string(s.Outcome)),
				When(s.StartedAt), When(s.CompletedAt), deleted, failed)
		}
		if len(sessions) == 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), "no sessions")
		}
		return tw.Flush()
	}

	show := &cobra.Command{
		Use:   "show SESSION",
		Short: "Show one session: its record, its snapshots by state and its tasks by state",
		Example: `  snapsweep sessions show wave-7
  snapsweep sessions show wave-7 -o json | jq .snapshots`,
		Args: cobra.ExactArgs(1),
	}
	so := newOpsOptions(show, deps)
	show.ValidArgsFunction = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return noFiles(nil)
		}
		return completer{so}.sessions(cmd, args, toComplete)
	}
	show.RunE = func(cmd *cobra.Command, args []string) error {
		if err := so.check(cmd); err != nil {
			return err
		}
		if !events.ValidSessionID(args[0]) {
			return UsageError(cmd, "%q is not a valid session id (%s)", args[0], sessionIDRule)
		}
		ctx := cmd.Context()
		reg, done, err := so.registry(ctx)
		if err != nil {
			return err
		}
		defer done()
		id := args[0]
		prices := cost.DefaultPrices()
		if pf := so.setting("SNAPSWEEP_PRICE_FILE"); pf != "" {
			if prices, err = cost.LoadPrices(pf); err != nil {
				return &ConfigError{err}
			}
		}
		// The service's own session status (GET /status?session=ID).
		st, err := (&service.StatusSource{Store: reg, Prices: prices, Now: so.deps.Now}).Session(ctx, id)
		if errors.Is(err, store.ErrNotFound) {
			return so.checkSession(ctx, reg, id)
		}
		if err != nil {
			return fmt.Errorf("session status: %w", err)
		}
		sess := st.Session
		type shown struct {
			Session   status.SessionRecord `json:"session"`
			Snapshots map[string]int64     `json:"snapshots"`
			Tasks     map[string]int64     `json:"tasks"`
			Failed    []status.Task        `json:"failedTasks,omitempty"`
			// Storage is what the session's cleanup is worth (package cost).
			Storage  *cost.Figures `json:"storage"`
			Currency string        `json:"currency"`
		}
		out := shown{Session: sess, Snapshots: st.Counts, Tasks: st.Tasks, Failed: st.Failed, Storage: st.Storage, Currency: st.Currency}
		rep := struct{ Missing []cost.MissingPrice }{st.Missing}
		if so.json() {
			return so.write(cmd.OutOrStdout(), out)
		}
		w := cmd.OutOrStdout()
		tw := NewTable(w)
		fmt.Fprintf(tw, "session\t%s\n", sess.SessionID)
		fmt.Fprintf(tw, "state\t%s\n", sess.State)
		outcome := Dash(string(sess.Outcome))
		if sess.Outcome != "" {
			outcome += fmt.Sprintf(" (%d deleted, %d failed or refused; judged %s)", sess.Deleted, sess.Failed, When(sess.OutcomeAt))
		}
		fmt.Fprintf(tw, "outcome\t%s\n", outcome)
		fmt.Fprintf(tw, "started\t%s\n", When(sess.StartedAt))
		fmt.Fprintf(tw, "completed\t%s\n", When(sess.CompletedAt))
		var parts []string
		for _, st := range store.States() {
			parts = append(parts, fmt.Sprintf("%s %d", st, out.Snapshots[string(st)]))
		}
		fmt.Fprintf(tw, "snapshots\t%s\n", strings.Join(parts, ", "))
		fmt.Fprintf(tw, "tasks\trunning %d, succeeded %d, failed %d\n", out.Tasks[string(store.TaskRunning)], out.Tasks[string(store.TaskSucceeded)], out.Tasks[string(store.TaskFailed)])
		for _, t := range out.Failed {
			fmt.Fprintf(tw, "  failed %s\t%s at %s\n", t.TaskID, Dash(clip(t.Error, 60)), When(t.StateTime))
		}
		for _, l := range savingsLines(out.Storage, out.Currency) {
			fmt.Fprintln(tw, l)
		}
		for _, m := range rep.Missing {
			fmt.Fprintf(tw, "no price\t%s: %d snapshots left out of the costs\n", m.Where, m.Snapshots)
		}
		fmt.Fprintf(tw, "savings\t%s\n", cost.Line(*out.Storage, out.Currency))
		return tw.Flush()
	}
	group.AddCommand(list, show)
	return group
}

// rejectedCommand is `snapsweep rejected list`.
func rejectedCommand(deps Deps) *cobra.Command {
	group := &cobra.Command{
		Use:   "rejected",
		Short: "Inspect messages snapsweep acknowledged but could never process",
		Args:  cobra.NoArgs,
	}
	var limit int
	list := &cobra.Command{
		Use:   "list",
		Short: "List the most recent rejected messages (bad JSON, missing fields, projects outside the allowlist, ...)",
		Example: `  snapsweep rejected list
  snapsweep rejected list -o json | jq -r '.rejected[].payload'`,
		Args: cobra.NoArgs,
	}
	o := newOpsOptions(list, deps)
	list.Flags().IntVar(&limit, "limit", 50, "at most this many")
	list.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := o.check(cmd); err != nil {
			return err
		}
		if limit <= 0 {
			return UsageError(cmd, "--limit must be positive")
		}
		ctx := cmd.Context()
		reg, done, err := o.registry(ctx)
		if err != nil {
			return err
		}
		defer done()
		rej, err := reg.ListRejected(ctx, limit)
		if err != nil {
			return fmt.Errorf("list rejected messages: %w", err)
		}
		if o.json() {
			if rej == nil {
				rej = []store.Rejected{}
			}
			return o.write(cmd.OutOrStdout(), struct {
				Rejected []store.Rejected `json:"rejected"`
			}{rej})
		}
		tw := NewTable(cmd.OutOrStdout())
		fmt.Fprintln(tw, "RECEIVED\tENDPOINT\tREASON\tFIELD\tMESSAGE ID\tDETAIL")
		for _, r := range rej {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", When(r.ReceivedAt), r.Endpoint, r.Reason, Dash(r.Field), Dash(r.MessageID), clip(r.Detail, 70))
		}
		if len(rej) == 0 {
			fmt.Fprintln(cmd.ErrOrStderr(), "no rejected messages")
		}
		return tw.Flush()
	}
	group.AddCommand(list)
	return group
}

// Orphan is a labelled snapshot in Compute that the registry does not know.
type Orphan struct {
	Project      string    `json:"project"`
	Name         string    `json:"name"`
	SessionLabel string    `json:"sessionLabel"`
	Status       string    `json:"status"`
	CreatedAt    time.Time `json:"createdAt,omitzero"`
	SourceDisk   string    `json:"sourceDisk,omitempty"`
	// KnownSession: the registry knows the session its label names.
	KnownSession bool `json:"knownSession"`
	// Sweep says what the scheduled sweep does with it (lifecycle.Policy.AdoptionFor).
	Sweep string `json:"sweep"`
}

// orphansCommand is `snapsweep orphans`.
func orphansCommand(deps Deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "orphans",
		Short: "List labelled snapshots in Compute that the registry does not know (read-only)",
		Long: `List the snapshots of every managed project that carry the ownership label
(SNAPSWEEP_SESSION_LABEL) but have no registry record: snapshots whose
snapshot.created event never arrived. Nothing is changed. The scheduled sweep
adopts those of sessions the registry knows once they are older than
SNAPSWEEP_ORPHAN_GRACE (SNAPSWEEP_ADOPT_ORPHANS) and cleans them when they
expire; those of sessions it never knew are only reported, never adopted or
deleted. The last column says which.`,
		Example: `  snapsweep orphans --project my-proj
  snapsweep orphans --projects migration-prod-1,migration-prod-2 -o json
  snapsweep orphans --compute-endpoint http://127.0.0.1:8089   # a local fake`,
		Args: cobra.NoArgs,
	}
	o := newOpsOptions(cmd, deps)
	o.addCompute(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := o.check(cmd); err != nil {
			return err
		}
		ctx := cmd.Context()
		cfg, err := o.config(ctx)
		if err != nil {
			return err
		}
		reg, done, err := o.registry(ctx)
		if err != nil {
			return err
		}
		defer done()
		compute, err := o.compute(ctx, cfg.ComputeEndpoint)
		if err != nil {
			return err
		}
		defer compute.Close()
		tty := o.deps.Terminal(cmd.ErrOrStderr())
		var found []Orphan
		listed := 0
		// The sweep's own decision, so the two never disagree.
		check := &sweep.OrphanCheck{Store: reg, Policy: cfg.Policy(), SessionLabel: cfg.SessionLabel}
		for _, project := range cfg.Projects {
			err := compute.ListByLabel(ctx, project, cfg.SessionLabel, func(s gce.Snapshot) error {
				listed++
				if tty && listed%50 == 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "\r\033[Kchecked %d labelled snapshots", listed)
				}
				l, err := check.Check(ctx, project, s, o.deps.Now())
				if err != nil || !l.Orphan() {
					return err
				}
				found = append(found, Orphan{Project: project, Name: s.Name, SessionLabel: l.Session,
					Status: s.Status, CreatedAt: s.CreationTime, SourceDisk: s.SourceDisk, KnownSession: l.KnownSession, Sweep: l.Adoption.Why})
				return nil
			})
			if err != nil {
				if tty {
					fmt.Fprintln(cmd.ErrOrStderr())
				}
				return fmt.Errorf("list snapshots of %s: %w", project, err)
			}
		}
		if tty && listed >= 50 {
			fmt.Fprintln(cmd.ErrOrStderr())
		}
		if o.json() {
			if found == nil {
				found = []Orphan{}
			}
			return o.write(cmd.OutOrStdout(), struct {
				Orphans []Orphan `json:"orphans"`
				Checked int      `json:"checked"`
			}{found, listed})
		}
		now := o.deps.Now()
		tw := NewTable(cmd.OutOrStdout())
		fmt.Fprintln(tw, "SNAPSHOT\tLABEL "+cfg.SessionLabel+"\tSTATUS\tAGE\tTHE SWEEP")
		unknown := 0
		for _, s := range found {
			if !s.KnownSession {
				unknown++
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\n", s.Project, s.Name, Dash(s.SessionLabel), s.Status, age(now, s.CreatedAt), s.Sweep)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d labelled snapshots in %s are not in the registry; %d of them name sessions this registry never knew (never adopted or deleted)\n",
			len(found), listed, strings.Join(cfg.Projects, ", "), unknown)
		return nil
	}
	return cmd
}

// compute opens the Compute client: a plain-http endpoint without
// credentials, anything else with Application Default Credentials.
func (o *opsOptions) compute(ctx context.Context, endpoint string) (*gce.Client, error) {
	hc, err := o.computeClient(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	opts := []option.ClientOption{option.WithHTTPClient(hc)}
	c, err := gce.New(ctx, gce.Config{Endpoint: endpoint}, opts...)
	if err != nil {
		return nil, fmt.Errorf("compute client: %w", err)
	}
	return c, nil
}

// computeEndpoint names the Compute API a command talks to, for messages.
func computeEndpoint(endpoint string) string {
	if endpoint == "" {
		return "the Compute API (compute.googleapis.com)"
	}
	return "the Compute API at " + endpoint
}

// computeClient is the HTTP client of the Compute API, with every call
// registered with the command's waits: plain http without credentials,
// anything else with Application Default Credentials.
func (o *opsOptions) computeClient(ctx context.Context, endpoint string) (*http.Client, error) {
	base := http.DefaultTransport
	if o.deps.ComputeHTTP != nil {
		if o.deps.ComputeHTTP.Transport != nil {
			base = o.deps.ComputeHTTP.Transport
		}
	} else {
		var err error
		if base, err = service.ComputeTransport(ctx, endpoint); err != nil {
			return nil, fmt.Errorf("%s: %w", computeEndpoint(endpoint), err)
		}
	}
	return &http.Client{Transport: waitedTransport{endpoint: computeEndpoint(endpoint), base: base}}, nil
}
