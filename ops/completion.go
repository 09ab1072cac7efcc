package ops

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/store"
)

// completionWait bounds a registry read made for shell completion: a
// completion that hangs is worse than none.
const completionWait = 2 * time.Second

// completer offers completions from the registry, where it is reachable.
// Every function answers nothing (and no file names) when it is not.
type completer struct{ o *opsOptions }

func noFiles(words []string) ([]string, cobra.ShellCompDirective) {
	return words, cobra.ShellCompDirectiveNoFileComp
}

// withRegistry runs fn against the registry with a short deadline.
func (c completer) withRegistry(cmd *cobra.Command, fn func(ctx context.Context, reg store.Registry) ([]string, error)) []string {
	ctx, cancel := context.WithTimeout(cmd.Context(), completionWait)
	defer cancel()
	reg, done, err := c.o.registry(ctx)
	if err != nil {
		return nil
	}
	defer done()
	words, err := fn(ctx, reg)
	if err != nil {
		return nil
	}
	return words
}

func withPrefix(words []string, prefix string) []string {
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, prefix) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

// sessions completes the ids of the newest 200 sessions, sorted.
func (c completer) sessions(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	return noFiles(c.withRegistry(cmd, func(ctx context.Context, reg store.Registry) ([]string, error) {
		list, err := reg.ListSessions(ctx, 200)
		var ids []string
		for _, s := range list {
			ids = append(ids, s.SessionID)
		}
		slices.Sort(ids)
		return withPrefix(ids, toComplete), err
	}))
}

// tasks completes the task ids of the session named by --session.
func (c completer) tasks(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	session, _ := cmd.Flags().GetString("session")
	if session == "" {
		return noFiles(nil)
	}
	return noFiles(c.withRegistry(cmd, func(ctx context.Context, reg store.Registry) ([]string, error) {
		var ids []string
		for _, st := range []store.TaskState{store.TaskRunning, store.TaskSucceeded, store.TaskFailed} {
			list, err := reg.ListTasks(ctx, session, st)
			if err != nil {
				return nil, err
			}
			for _, t := range list {
				ids = append(ids, t.TaskID)
			}
		}
		slices.Sort(ids)
		return withPrefix(ids, toComplete), nil
	}))
}

// states completes snapshot states (no registry needed).
func (completer) states(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	var names []string
	for _, s := range store.States() {
		names = append(names, string(s))
	}
	// --state takes a comma list: complete the last element.
	done, last := "", toComplete
	if i := strings.LastIndex(toComplete, ","); i >= 0 {
		done, last = toComplete[:i+1], toComplete[i+1:]
	}
	var out []string
	for _, n := range withPrefix(names, last) {
		out = append(out, done+n)
	}
	return noFiles(out)
}

// snapshotKeys completes PROJECT/NAME of live snapshots, newest last.
func (c completer) snapshotKeys(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return noFiles(nil)
	}
	return noFiles(c.withRegistry(cmd, func(ctx context.Context, reg store.Registry) ([]string, error) {
		page, err := reg.ListSnapshots(ctx, store.Query{States: store.LiveStates(), OrderByCreated: true, Limit: 500})
		var keys []string
		for _, s := range page.Snapshots {
			if !s.Archived {
				keys = append(keys, s.Key().String())
			}
		}
		return withPrefix(keys, toComplete), err
	}))
}
