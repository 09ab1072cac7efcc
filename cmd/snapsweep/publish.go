package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"cloud.google.com/go/pubsub/v2"
	"github.com/google/uuid"
	"github.com/sethvargo/go-envconfig"
	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/config"
	"github.com/snapsweep/snapsweep/events"
	"github.com/snapsweep/snapsweep/ops"
	"github.com/snapsweep/snapsweep/reporter"
)

// publishSettings are the flags every publish command shares.
type publishSettings struct {
	project string
	topic   string
}

// eventFlags are the flags of one event subcommand.
type eventFlags struct {
	session, task                 string
	snapshot, snapshotProject     string
	snapshotID                    string
	sourceDisk, retention, reason string
	id, at                        string
}

// eventCommands describes the subcommands: the event type and which flags
// it has and needs.
var eventCommands = []struct {
	name     string
	typ      events.Type
	short    string
	task     bool // --task required
	snapshot bool // --snapshot flags
	reason   bool // --error
}{
	{"session-started", events.SessionStarted, "The session began (optional)", false, false, false},
	{"task-started", events.TaskStarted, "Work on a task (one VM) began (optional)", true, false, false},
	{"snapshot-created", events.SnapshotCreated, "Register a snapshot the job took (create it with --labels=<label>=<session> first)", true, true, false},
	{"snapshot-deleted", events.SnapshotDeleted, "The job deleted a snapshot itself", true, true, false},
	{"task-completed", events.TaskCompleted, "A task succeeded: its snapshots are deleted", true, false, false},
	{"task-failed", events.TaskFailed, "A task failed: its snapshots are kept for the failed-task retention", true, false, true},
	{"session-completed", events.SessionCompleted, "Every task is done: session-level cleanup and outcome", false, false, false},
}

// publishCommand returns `snapsweep publish`. deps.Lookup reads the
// environment (GOOGLE_CLOUD_PROJECT, SNAPSWEEP_EVENTS_TOPIC);
// deps.OpenPubSub opens the Pub/Sub client (nil: pubsub.NewClient).
func publishCommand(deps ops.Deps) *cobra.Command {
	newClient := deps.OpenPubSub
	if newClient == nil {
		newClient = func(ctx context.Context, project string) (*pubsub.Client, error) {
			return pubsub.NewClient(ctx, project)
		}
	}
	env := envconfig.LookuperFunc(deps.Lookup)
	var set publishSettings
	var projectFlag envconfig.Lookuper
	// resolve reads --project, else GOOGLE_CLOUD_PROJECT.
	resolve := func() { set.project = config.Value("GOOGLE_CLOUD_PROJECT", projectFlag, env) }
	var stdin bool
	cmd := &cobra.Command{
		Use:   "publish {EVENT [flags] | --stdin | -}",
		Short: "Publish migration events to snapsweep (for shell jobs)",
		Long: `Publish migration events to the migration-events topic, validated with the
service's own rules first: invalid input publishes nothing and exits 2; a
failed publish exits 1. Each published event is printed as one JSON line
{"id","type","messageId"}.

With --stdin (or -) it reads events as JSON lines from standard input, each a
complete event ({"id","type","time","sessionId",...}); if any line is invalid,
every bad line is reported and nothing is published.`,
		Example: `  gcloud compute snapshots create snap-1 --source-disk=disk-1 --source-disk-zone=europe-west1-b \
      --labels=migration-session=wave-7
  snapsweep publish snapshot-created --session wave-7 --task vm-1 --snapshot snap-1 --source-disk disk-1 \
      --snapshot-id "$(gcloud compute snapshots describe snap-1 --format='value(id)')"
  snapsweep publish task-completed --session wave-7 --task vm-1
  snapsweep publish task-failed --session wave-7 --task vm-2 --error "disk attach timed out"
  snapsweep publish session-completed --session wave-7
  snapsweep publish - < events.jsonl`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0, len(args) == 1 && args[0] == "-":
				return nil
			case len(args) == 1:
				msg := fmt.Sprintf("unknown event %q", args[0])
				if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
					msg += fmt.Sprintf("; did you mean %s?", s[0])
				}
				return ops.UsageError(cmd, "%s; events: %s", msg, eventNames())
			default:
				return ops.UsageError(cmd, "unexpected arguments %q", args)
			}
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if !stdin && len(args) == 0 {
				return ops.UsageError(cmd, "name an event (%s), or read JSON lines with --stdin", eventNames())
			}
			resolve()
			evs, err := readEvents(cmd.InOrStdin())
			if err != nil {
				return &ops.ConfigError{Err: err}
			}
			return publishEvents(cmd.Context(), cmd.OutOrStdout(), set, newClient, evs)
		},
	}
	cmd.SuggestionsMinimumDistance = 2
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return ops.UsageError(c, "%v", err) })
	pf := cmd.PersistentFlags()
	projectFlag = config.FlagsFor(pf, "GOOGLE_CLOUD_PROJECT")
	// --topic, not --events-topic: the command has one topic.
	pf.StringVar(&set.topic, "topic", config.Value("SNAPSWEEP_EVENTS_TOPIC", env),
		"topic id, or projects/P/topics/T (env SNAPSWEEP_EVENTS_TOPIC)")
	cmd.Flags().BoolVar(&stdin, "stdin", false, "read events as JSON lines from standard input (same as -)")

	for _, ec := range eventCommands {
		var f eventFlags
		sub := &cobra.Command{
			Use:   ec.name,
			Short: ec.short,
			Args: func(c *cobra.Command, args []string) error {
				if len(args) > 0 {
					return ops.UsageError(c, "unexpected arguments %q (every value is a flag)", args)
				}
				return nil
			},
			RunE: func(c *cobra.Command, _ []string) error {
				resolve()
				ev, err := f.event(ec.typ, ec.task, ec.snapshot, set)
				if err != nil {
					return &ops.ConfigError{Err: fmt.Errorf("%s: %w", c.CommandPath(), err)}
				}
				return publishEvents(c.Context(), c.OutOrStdout(), set, newClient, []events.Event{ev})
			},
		}
		fl := sub.Flags()
		fl.StringVar(&f.session, "session", "", "session id (required; also the value of the snapshots' ownership label)")
		if ec.task {
			fl.StringVar(&f.task, "task", "", "task id: one VM of the session (required)")
		}
		if ec.snapshot {
			fl.StringVar(&f.snapshot, "snapshot", "", "snapshot name (required)")
			fl.StringVar(&f.snapshotProject, "snapshot-project", "", "project of the snapshot (default: --project)")
			fl.StringVar(&f.sourceDisk, "source-disk", "", "disk the snapshot was taken from")
			fl.StringVar(&f.snapshotID, "snapshot-id", "",
				"Compute's numeric id of the snapshot (gcloud compute snapshots describe NAME --format='value(id)'); "+
					"snapsweep then never deletes another snapshot that reuses the name")
			if ec.typ == events.SnapshotCreated {
				fl.StringVar(&f.retention, "retention", "", `keep it this long unless cleaned up earlier, a Go duration such as "72h" (default: the service's TTL)`)
			}
		}
		if ec.reason {
			fl.StringVar(&f.reason, "error", "", "why the task failed")
		}
		fl.StringVar(&f.id, "id", "", "event id (default: a random UUID); reuse it when retrying a publish")
		fl.StringVar(&f.at, "time", "", "when it happened, RFC 3339 (default: now)")
		cmd.AddCommand(sub)
	}
	return cmd
}

func eventNames() string {
	names := make([]string, len(eventCommands))
	for i, ec := range eventCommands {
		names[i] = ec.name
	}
	return strings.Join(names, ", ")
}

// flagOf maps an event field to the flag that sets it, for messages.
var flagOf = map[string]string{
	"id": "--id", "time": "--time", "sessionId": "--session", "taskId": "--task", "error": "--error",
	"snapshot.name": "--snapshot", "snapshot.project": "--snapshot-project",
	"snapshot.sourceDisk": "--source-disk", "snapshot.retention": "--retention", "snapshot.id": "--snapshot-id",
}

// standIns replace the value of a field that failed validation with a valid
// one, so that validating again finds the next bad field (see flagProblems).
var standIns = map[string]func(*events.Event){
	"id":                  func(e *events.Event) { e.ID = "x" },
	"time":                func(e *events.Event) { e.Time = time.Unix(0, 0).UTC() },
	"sessionId":           func(e *events.Event) { e.SessionID = "s" },
	"taskId":              func(e *events.Event) { e.TaskID = "t" },
	"error":               func(e *events.Event) { e.Error = "" },
	"snapshot.project":    func(e *events.Event) { e.Snapshot.Project = "stand-in" },
	"snapshot.name":       func(e *events.Event) { e.Snapshot.Name = "s" },
	"snapshot.sourceDisk": func(e *events.Event) { e.Snapshot.SourceDisk = "" },
	"snapshot.retention":  func(e *events.Event) { e.Snapshot.Retention = "" },
	"snapshot.id":         func(e *events.Event) { e.Snapshot.ID = "" },
}

// flagProblems validates ev with the service's rules and names every bad
// flag, not just the first: Validate stops at the first field in error, so
// that field gets a valid stand-in and the event is validated again, until
// it passes. Fields in reported (whose flags are already reported missing)
// are not named again.
func flagProblems(ev events.Event, reported map[string]bool) []string {
	if ev.Snapshot != nil {
		snap := *ev.Snapshot
		ev.Snapshot = &snap // the stand-ins must not change the caller's
	}
	var problems []string
	for range len(standIns) + 1 {
		err := ev.Validate()
		if err == nil {
			break
		}
		rej, ok := events.AsReject(err)
		if !ok || standIns[rej.Field] == nil {
			return append(problems, err.Error())
		}
		if !reported[rej.Field] {
			problems = append(problems, fmt.Sprintf("%s: %s", flagOf[rej.Field], rej.Detail))
		}
		standIns[rej.Field](&ev)
	}
	return problems
}

// event builds and validates the event the flags describe. It reports
// every missing or invalid flag at once, in one error.
func (f *eventFlags) event(typ events.Type, needTask, needSnapshot bool, set publishSettings) (events.Event, error) {
	var (
		missing  []string
		problems []string
		reported = map[string]bool{} // fields whose flag is reported missing
	)
	need := func(ok bool, flag, field string) {
		if !ok {
			missing = append(missing, flag)
			reported[field] = true
		}
	}
	need(f.session != "", "--session", "sessionId")
	if needTask {
		need(f.task != "", "--task", "taskId")
	}
	if needSnapshot {
		need(f.snapshot != "", "--snapshot", "snapshot.name")
	}
	if len(missing) > 0 {
		problems = append(problems, "missing "+strings.Join(missing, ", "))
	}
	ev := events.Event{ID: f.id, Type: typ, Time: time.Now().UTC(), SessionID: f.session, TaskID: f.task, Error: f.reason}
	if ev.ID == "" {
		ev.ID = uuid.NewString()
	}
	if f.at != "" {
		if t, err := time.Parse(time.RFC3339Nano, f.at); err != nil {
			problems = append(problems, fmt.Sprintf("--time %q: must be an RFC 3339 time such as 2024-05-01T12:00:00Z", f.at))
		} else {
			ev.Time = t
		}
	}
	if needSnapshot {
		project := f.snapshotProject
		if project == "" {
			project = pubsubProject(set)
		}
		if project == "" {
			problems = append(problems, "missing --snapshot-project (or --project, or GOOGLE_CLOUD_PROJECT)")
			reported["snapshot.project"] = true
		}
		ev.Snapshot = &events.SnapshotRef{Project: project, Name: f.snapshot, SourceDisk: f.sourceDisk, Retention: f.retention, ID: f.snapshotID}
	}
	problems = append(problems, flagProblems(ev, reported)...)
	if len(problems) > 0 {
		return ev, errors.New(strings.Join(problems, "; "))
	}
	return ev, nil
}

// readEvents reads events as JSON lines, each checked with the service's
// Decode. Blank lines are skipped. If any line is invalid, the error lists
// every bad line and no event is returned.
func readEvents(r io.Reader) ([]events.Event, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), events.MaxEventBytes+2)
	var (
		evs  []events.Event
		bad  []string
		seen = map[string]int{}
		n    int
	)
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		ev, err := events.Decode(line)
		if err != nil {
			bad = append(bad, fmt.Sprintf("line %d: %v", n, err))
			continue
		}
		if first, ok := seen[ev.ID]; ok {
			bad = append(bad, fmt.Sprintf("line %d: id %q is already used on line %d (one id names one event: the service would drop the later one as a duplicate)", n, ev.ID, first))
			continue
		}
		seen[ev.ID] = n
		evs = append(evs, ev)
	}
	switch err := sc.Err(); {
	case errors.Is(err, bufio.ErrTooLong):
		bad = append(bad, fmt.Sprintf("line %d: longer than %d bytes; stopped reading", n+1, events.MaxEventBytes))
	case err != nil:
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("%d invalid line(s), nothing published:\n  %s", len(bad), strings.Join(bad, "\n  "))
	}
	return evs, nil
}

// pubsubProject is the project of the topic: the one in a full topic name,
// else --project.
func pubsubProject(set publishSettings) string {
	if p, _, ok := fullTopic(set.topic); ok {
		return p
	}
	return set.project
}

// fullTopic splits projects/P/topics/T.
func fullTopic(topic string) (project, id string, ok bool) {
	parts := strings.Split(topic, "/")
	if len(parts) == 4 && parts[0] == "projects" && parts[2] == "topics" && parts[1] != "" && parts[3] != "" {
		return parts[1], parts[3], true
	}
	return "", "", false
}

// published is the line printed for each published event.
type published struct {
	ID        string      `json:"id"`
	Type      events.Type `json:"type"`
	MessageID string      `json:"messageId"`
}

// publishEvents publishes validated events, waits for every result, prints
// one line per published event and returns the failures (exit code 1).
func publishEvents(ctx context.Context, out io.Writer, set publishSettings, newClient ops.PubSubFunc, evs []events.Event) error {
	project := pubsubProject(set)
	switch {
	case set.topic == "":
		return &ops.ConfigError{Err: errors.New("publish: --topic (SNAPSWEEP_EVENTS_TOPIC) must not be empty")}
	case project == "":
		return &ops.ConfigError{Err: errors.New("publish: no project: set GOOGLE_CLOUD_PROJECT or --project, or give --topic as projects/P/topics/T")}
	case len(evs) == 0:
		return nil
	}
	msgs := make([]*pubsub.Message, len(evs))
	for i, ev := range evs {
		m, err := reporter.NewMessage(ev)
		if err != nil { // unreachable: every event was validated
			return &ops.ConfigError{Err: fmt.Errorf("event %s: %w", ev.ID, err)}
		}
		msgs[i] = m
	}
	client, err := newClient(ctx, project)
	if err != nil {
		return fmt.Errorf("pubsub client: %w", err)
	}
	defer client.Close()
	pub := client.Publisher(set.topic)
	defer pub.Stop()
	results := make([]*pubsub.PublishResult, len(msgs))
	for i, m := range msgs {
		results[i] = pub.Publish(ctx, m)
	}
	enc := json.NewEncoder(out)
	var errs []error
	for i, res := range results {
		id, err := res.Get(ctx)
		if err != nil {
			errs = append(errs, &reporter.PublishError{Event: evs[i], Err: err})
			continue
		}
		if err := enc.Encode(published{ID: evs[i].ID, Type: evs[i].Type, MessageID: id}); err != nil {
			errs = append(errs, fmt.Errorf("write output: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d events not published to %s:\n%w", len(errs), len(evs), pub, errors.Join(errs...))
	}
	return nil
}
