// Package ops is snapsweep's operator commands (snapshots, sessions,
// cleanup, sweep, health, hold, release, rejected, orphans, report): their
// flags, what they do and how they print it. They read and change the
// registry directly and act only through the code the service runs: a
// manual cleanup claims and publishes with cleanup.Scheduler, a sweep is
// sweep.Sweeper built by service.NewComponents, holds and releases are
// lifecycle transitions. It must not decide anything about a snapshot
// itself: every such decision is lifecycle's.
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/service"
	"github.com/snapsweep/snapsweep/store"
)

// The operator commands (snapshots, sessions, cleanup, sweep, health, hold,
// release, rejected, orphans) read and change the registry directly:
// Firestore with Application Default Credentials, or the emulator named by
// FIRESTORE_EMULATOR_HOST. Actions go through the same code as the service
// (cleanup.Scheduler, sweep.Sweeper), so every rule of the contract holds:
// a cleanup message an operator publishes is checked again by the handler.

// Deps is the outside world of the operator commands, the one dependency
// struct every command receives. DefaultDeps reach the real services (and
// honour the emulator variables); tests swap in their own environment and
// clients.
type Deps struct {
	// Lookup reads the environment (GOOGLE_CLOUD_PROJECT, SNAPSWEEP_*, USER).
	Lookup func(string) (string, bool)
	// OpenRegistry opens the registry of a project and database, on the
	// emulator at emulator when it is not empty.
	OpenRegistry func(ctx context.Context, project, database, emulator string) (store.Registry, func() error, error)
	// OpenPubSub opens a Pub/Sub client (honours PUBSUB_EMULATOR_HOST).
	OpenPubSub PubSubFunc
	// ComputeHTTP, when set, is the HTTP client of the Compute API.
	ComputeHTTP *http.Client
	// HTTP calls a running service (--url).
	HTTP *http.Client
	Now  func() time.Time
	// Terminal reports whether w is a terminal (progress bars).
	Terminal func(w io.Writer) bool
}

// DefaultDeps are the real environment, registry, Pub/Sub and clock.
func DefaultDeps() Deps {
	return Deps{
		Lookup:       os.LookupEnv,
		OpenRegistry: openFirestoreRegistry,
		OpenPubSub: func(ctx context.Context, project string) (*pubsub.Client, error) {
			return pubsub.NewClient(ctx, project)
		},
		HTTP:     &http.Client{Timeout: 10 * time.Minute},
		Now:      time.Now,
		Terminal: IsTerminal,
	}
}

// firestoreEndpoint names the Firestore a command talks to, for messages.
func firestoreEndpoint(project, database, emulator string) string {
	if emulator != "" {
		return fmt.Sprintf("the Firestore emulator at %s (project %s)", emulator, project)
	}
	return fmt.Sprintf("Firestore (firestore.googleapis.com, project %s, database %s)", project, database)
}

// openFirestoreRegistry opens the Firestore registry the way the service
// does (service.OpenFirestore), with every call registered with the
// command's waits.
func openFirestoreRegistry(ctx context.Context, project, database, emulator string) (store.Registry, func() error, error) {
	c, closeFn, err := service.OpenFirestore(ctx, project, database, emulator, grpcWaits(firestoreEndpoint(project, database, emulator)))
	if err != nil {
		return nil, nil, err
	}
	return store.NewFirestore(c), closeFn, nil
}

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Commands returns every operator command.
func Commands(deps Deps) []*cobra.Command {
	return []*cobra.Command{
		snapshotsCommand(deps), sessionsCommand(deps), cleanupCommand(deps), sweepCommand(deps),
		healthCommand(deps), holdCommand(deps), releaseCommand(deps), rejectedCommand(deps), orphansCommand(deps),
		reportCommand(deps),
	}
}

// opsOptions are the flags every operator command shares.
type opsOptions struct {
	deps   Deps
	output string

	// flags are the service settings the command takes as flags
	// (config.FlagsFor: --project, --firestore-database, and per command
	// --cleanup-topic, --compute-endpoint, --projects, --price-file);
	// unset, the environment, then the service's default, decide.
	flags []envconfig.Lookuper

	// project and database are the registry's, read by check (and by
	// registry, for completion, which runs without check).
	project  string
	database string

	// remote is set when the command talks to a running service (--url)
	// instead of the registry: then no project is needed.
	remote bool

	// timeout bounds the whole command (--timeout).
	timeout time.Duration
}

// defaultTimeout bounds every command that talks to Firestore, Pub/Sub,
// Compute or a service.
const defaultTimeout = 30 * time.Second

// newOpsOptions registers the shared flags on cmd.
func newOpsOptions(cmd *cobra.Command, deps Deps) *opsOptions {
	o := &opsOptions{deps: deps}
	fl := cmd.Flags()
	o.addSettings(cmd, "GOOGLE_CLOUD_PROJECT", "SNAPSWEEP_FIRESTORE_DATABASE")
	fl.StringVarP(&o.output, "output", "o", "table", "output format: table, json or yaml")
	fl.DurationVar(&o.timeout, "timeout", defaultTimeout, "give up after this long, naming what did not answer")
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return UsageError(c, "%v", err) })
	return o
}

// addSettings adds flags of service settings (generated from the
// configuration by config.FlagsFor).
func (o *opsOptions) addSettings(cmd *cobra.Command, envs ...string) {
	o.flags = append(o.flags, config.FlagsFor(cmd.Flags(), envs...))
}

// addCleanupTopic adds --cleanup-topic (commands that publish cleanup messages).
func (o *opsOptions) addCleanupTopic(cmd *cobra.Command) {
	o.addSettings(cmd, "SNAPSWEEP_CLEANUP_TOPIC")
}

// addCompute adds the flags of commands that call the Compute API.
func (o *opsOptions) addCompute(cmd *cobra.Command) {
	o.addSettings(cmd, "SNAPSWEEP_COMPUTE_ENDPOINT", "SNAPSWEEP_PROJECTS")
}

// lookups are where settings come from: the flags, then the environment.
func (o *opsOptions) lookups() []envconfig.Lookuper {
	return append(slices.Clone(o.flags), envconfig.LookuperFunc(o.deps.Lookup))
}

// setting is one service setting's value (config.Value).
func (o *opsOptions) setting(env string) string { return config.Value(env, o.lookups()...) }

// env reads a variable that is no setting of the service (USER, the
// emulator hosts).
func (o *opsOptions) env(name, def string) string {
	if v, ok := o.deps.Lookup(name); ok && v != "" {
		return v
	}
	return def
}

// resolve reads the registry's project and database.
func (o *opsOptions) resolve() {
	o.project, o.database = o.setting("GOOGLE_CLOUD_PROJECT"), o.setting("SNAPSWEEP_FIRESTORE_DATABASE")
}

// check validates the shared flags (usage errors exit 2).
func (o *opsOptions) check(cmd *cobra.Command) error {
	o.resolve()
	var problems []string
	switch o.output {
	case "table", "json", "yaml":
	default:
		problems = append(problems, fmt.Sprintf("--output %q: want table, json or yaml", o.output))
	}
	if o.timeout <= 0 {
		problems = append(problems, fmt.Sprintf("--timeout %s: must be positive", o.timeout))
	}
	switch {
	case o.remote && o.project == "":
	case o.project == "":
		problems = append(problems, "no project: set --project or GOOGLE_CLOUD_PROJECT")
	case !events.ValidProjectID(o.project):
		problems = append(problems, fmt.Sprintf("--project %q is not a valid project id", o.project))
	}
	if len(problems) > 0 {
		return UsageError(cmd, "%s", strings.Join(problems, "; "))
	}
	return nil
}

// json reports whether the output is structured (JSON or YAML): write it
// with o.write.
func (o *opsOptions) json() bool { return o.output == "json" || o.output == "yaml" }

// write writes v as JSON or YAML, as -o asks.
func (o *opsOptions) write(w io.Writer, v any) error {
	if o.output == "yaml" {
		return WriteYAML(w, v)
	}
	return WriteJSON(w, v)
}

// registry opens the registry; close it when done.
func (o *opsOptions) registry(ctx context.Context) (store.Registry, func(), error) {
	o.resolve()
	reg, closeFn, err := o.deps.OpenRegistry(ctx, o.project, o.database, o.env("FIRESTORE_EMULATOR_HOST", ""))
	if err != nil {
		return nil, nil, err
	}
	return reg, func() {
		if closeFn != nil {
			_ = closeFn()
		}
	}, nil
}

// open loads the service configuration and opens the registry (close it
// with the func when done).
func (o *opsOptions) open(ctx context.Context) (*config.Config, store.Registry, func(), error) {
	cfg, err := o.config(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	reg, done, err := o.registry(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	return cfg, reg, done, nil
}

// config loads the service configuration the way `snapsweep serve` does
// (flags first, then the environment), so that the policy, the ownership
// label and the allowlist are the service's.
func (o *opsOptions) config(ctx context.Context) (*config.Config, error) {
	cfg, err := config.Load(ctx, o.lookups()...)
	if err != nil {
		return nil, &ConfigError{err}
	}
	return cfg, nil
}

// WriteJSON writes v as indented JSON.
func WriteJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// NewTable returns a writer that aligns tab-separated columns; Flush it.
func NewTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// When formats a time for tables: UTC to the second, "-" when unset.
func When(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

// age formats how long ago t was, to the second ("-" when unset).
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}

// Dash returns s, or "-" for an empty cell.
func Dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clip shortens s to n characters for a table cell.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// parseKey parses PROJECT/NAME.
func parseKey(cmd *cobra.Command, arg string) (store.Key, error) {
	project, name, ok := strings.Cut(arg, "/")
	if !ok || !events.ValidProjectID(project) || !events.ValidSnapshotName(name) {
		return store.Key{}, UsageError(cmd, "%q: want PROJECT/NAME, e.g. my-project/snap-vm-1-boot", arg)
	}
	return store.Key{Project: project, Name: name}, nil
}

// progress reports the advance of a long operation on w: a bar redrawn in
// place on a terminal, a plain line every few seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	what  string
	total int
	done  int
	last  time.Time
}

func newProgress(w io.Writer, tty bool, what string, total int) *progress {
	return &progress{w: w, tty: tty, what: what, total: total}
}

// add advances the count by n.
func (p *progress) add(n int) {
	p.done += n
	now := time.Now()
	if p.tty {
		p.draw()
		return
	}
	if p.done == p.total || now.Sub(p.last) >= 2*time.Second {
		p.last = now
		fmt.Fprintf(p.w, "%s: %d/%d\n", p.what, p.done, p.total)
	}
}

func (p *progress) draw() {
	const width = 30
	filled := width
	if p.total > 0 {
		filled = min(width, p.done*width/p.total)
	}
	fmt.Fprintf(p.w, "\r\033[K%s [%s%s] %d/%d", p.what, strings.Repeat("█", filled), strings.Repeat("░", width-filled), p.done, p.total)
}

// finish ends the bar's line.
func (p *progress) finish() {
	if p.tty {
		fmt.Fprintln(p.w)
	}
}

// exitError is a failure whose message was already explained on stdout
// (exit code 1).
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

var errNoRecord = errors.New("no such snapshot in the registry")

// notFoundError is an id the registry does not know (exit code 1).
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// checkSession returns nil when the registry knows session id, else an
// error naming the closest session ids it knows.
func (o *opsOptions) checkSession(ctx context.Context, reg store.Registry, id string) error {
	_, err := reg.GetSession(ctx, id)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("read session %s: %w", id, err)
	}
	sessions, err := reg.ListSessions(ctx, 500)
	if err != nil {
		return fmt.Errorf("list sessions: %w", err)
	}
	ids := make([]string, len(sessions))
	for i, s := range sessions {
		ids[i] = s.SessionID
	}
	return &notFoundError{fmt.Sprintf("no session %q in the registry of project %s%s", id, o.project, closest("sessions", id, ids))}
}

// checkTask returns nil when the registry knows the task, else an error
// naming the closest task ids of its session.
func (o *opsOptions) checkTask(ctx context.Context, reg store.Registry, session, task string) error {
	_, err := reg.GetTask(ctx, store.TaskKey{SessionID: session, TaskID: task})
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("read task %s: %w", task, err)
	}
	var ids []string
	for _, st := range []store.TaskState{store.TaskRunning, store.TaskSucceeded, store.TaskFailed} {
		tasks, err := reg.ListTasks(ctx, session, st)
		if err != nil {
			return fmt.Errorf("list tasks: %w", err)
		}
		for _, t := range tasks {
			ids = append(ids, t.TaskID)
		}
	}
	return &notFoundError{fmt.Sprintf("no task %q in session %s%s", task, session, closest("tasks", task, ids))}
}

// closest says which of known are nearest to id (by edit distance), for a
// not-found message.
func closest(what, id string, known []string) string {
	if len(known) == 0 {
		return "; it knows no " + what
	}
	type cand struct {
		id string
		d  int
	}
	cands := make([]cand, len(known))
	for i, k := range known {
		cands[i] = cand{k, editDistance(strings.ToLower(id), strings.ToLower(k))}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return a.d - b.d })
	var out []string
	for _, c := range cands[:min(3, len(cands))] {
		out = append(out, c.id)
	}
	return "; closest known " + what + ": " + strings.Join(out, ", ")
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur := make([]int, len(rb)+1)
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(rb)]
}

// plural is "1 snapshot", "2 snapshots".
func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
