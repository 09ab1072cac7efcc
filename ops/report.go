package ops

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/snapsweep/snapsweep/cost"
	"github.com/snapsweep/snapsweep/events"
)

// reportCommand is `snapsweep report`: what the cleanup is worth.
func reportCommand(deps Deps) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "report",
		Short: "What the cleanup is worth: storage deleted (up to) and the monthly cost avoided, storage kept and its cost by reason",
		Long: `What the cleanup is worth, per session, per project and overall, from the
sizes Compute reported when snapsweep read each snapshot and the price table
(built-in list prices, or SNAPSWEEP_PRICE_FILE). Deleted storage is an upper
bound of what was freed: Compute moves data a later snapshot of the chain
still needs into it (docs/operations.md). Reads every selected record (one
Firestore read each).`,
		Example: `  snapsweep report
  snapsweep report --session wave-7 -o json
  snapsweep report --since 720h --for-project app-prod -o yaml`,
		Args: cobra.NoArgs,
	}
	o := newOpsOptions(cmd, deps)
	var session, forProject string
	var since time.Duration
	cmd.Flags().StringVar(&session, "session", "", "only this session")
	cmd.Flags().StringVar(&forProject, "for-project", "", "only snapshots of this managed project (--project is the registry's)")
	cmd.Flags().DurationVar(&since, "since", 0, "only snapshots registered in the last DURATION (e.g. 720h)")
	o.addSettings(cmd, "SNAPSWEEP_PRICE_FILE")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := o.check(cmd); err != nil {
			return err
		}
		if session != "" && !events.ValidSessionID(session) {
			return UsageError(cmd, "%q is not a valid session id (%s)", session, sessionIDRule)
		}
		if since < 0 {
			return UsageError(cmd, "--since must be positive")
		}
		prices := cost.DefaultPrices()
		if priceFile := o.setting("SNAPSWEEP_PRICE_FILE"); priceFile != "" {
			p, err := cost.LoadPrices(priceFile)
			if err != nil {
				return &ConfigError{err}
			}
			prices = p
		}
		ctx := cmd.Context()
		reg, done, err := o.registry(ctx)
		if err != nil {
			return err
		}
		defer done()
		now := o.deps.Now()
		f := cost.Filter{SessionID: session, Project: forProject}
		if since > 0 {
			f.Since = now.Add(-since)
		}
		recs, _, _, err := cost.Load(ctx, reg, f)
		if err != nil {
			return err
		}
		rep := cost.Compute(recs, prices, now)
		if o.json() {
			return o.write(cmd.OutOrStdout(), rep)
		}
		return writeCostReport(cmd.OutOrStdout(), rep)
	}
	return cmd
}

// writeCostReport renders a cost report as tables: overall, then per
// project and per session, retained snapshots, chains, missing prices.
func writeCostReport(w io.Writer, rep *cost.Report) error {
	tw := NewTable(w)
	fmt.Fprintln(tw, "SCOPE\tDELETED\tUP TO\tAVOIDED/MONTH\tKEPT\tKEPT STORAGE\tKEPT/MONTH\tRETAINED UNTIL END")
	row := func(scope string, f *cost.Figures) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%s\t%s\n", scope, f.Deleted.Snapshots, cost.Bytes(f.Deleted.Bytes),
			cost.Money(f.Deleted.MonthlyCost, rep.Currency), f.KeptTotal.Snapshots, cost.Bytes(f.KeptTotal.Bytes),
			cost.Money(f.KeptTotal.MonthlyCost, rep.Currency), cost.Money(f.RetentionCost, rep.Currency))
	}
	row("overall", &rep.Overall)
	for _, p := range slices.Sorted(maps.Keys(rep.Projects)) {
		row("project "+p, rep.Projects[p])
	}
	for _, s := range slices.Sorted(maps.Keys(rep.Sessions)) {
		row("session "+s, rep.Sessions[s])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := writeKept(w, &rep.Overall, rep.Currency); err != nil {
		return err
	}
	if len(rep.Retained) > 0 {
		fmt.Fprintln(w)
		tw = NewTable(w)
		fmt.Fprintln(tw, "RETAINED\tSESSION\tUNTIL\tSTORAGE\tCOST UNTIL THEN")
		for _, r := range rep.Retained {
			c := "no size or price"
			if r.Cost != nil {
				c = cost.Money(*r.Cost, rep.Currency)
			}
			fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\n", r.Project, r.Name, r.SessionID, When(r.Until), cost.Bytes(r.Bytes), c)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(rep.Chains) > 0 {
		fmt.Fprintln(w)
		tw = NewTable(w)
		fmt.Fprintln(tw, "CHAIN\tDELETED\tKEPT\tBEFORE\tAFTER\tFREED")
		opt := func(v *int64) string {
			if v == nil {
				return "not read yet"
			}
			return cost.Bytes(*v)
		}
		for _, c := range rep.Chains {
			fmt.Fprintf(tw, "%s %s\t%d\t%d\t%s\t%s\t%s\n", c.Project, c.Chain, c.Deleted, c.Kept, opt(c.Before), opt(c.After), opt(c.Freed))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(rep.Missing) > 0 {
		fmt.Fprintln(w)
		for _, m := range rep.Missing {
			fmt.Fprintf(w, "no price for %s: %d snapshots, %s left out of the costs (set SNAPSWEEP_PRICE_FILE)\n", m.Where, m.Snapshots, cost.Bytes(m.Bytes))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "prices: %s\n", rep.Prices)
	for _, b := range rep.Bounds {
		fmt.Fprintf(w, "note: %s\n", b)
	}
	fmt.Fprintf(w, "savings: %s\n", cost.Line(rep.Overall, rep.Currency))
	return nil
}

// writeKept renders kept storage by reason.
func writeKept(w io.Writer, f *cost.Figures, currency string) error {
	tw := NewTable(w)
	fmt.Fprintln(tw, "KEPT BECAUSE\tSNAPSHOTS\tSTORAGE\tCOST/MONTH\tNOT MEASURED\tNOT FINAL\tNO PRICE")
	for _, why := range cost.Reasons() {
		k := f.Kept[why]
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%d\t%d\n", why, k.Snapshots, cost.Bytes(k.Bytes), cost.Money(k.MonthlyCost, currency),
			k.Unmeasured, k.NotFinal, k.Unpriced)
	}
	return tw.Flush()
}

// savingsLines is the account of one scope for `sessions show`.
func savingsLines(f *cost.Figures, currency string) []string {
	var parts []string
	for _, why := range cost.Reasons() {
		if k := f.Kept[why]; k.Snapshots > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (%s, %s/month)", why, k.Snapshots, cost.Bytes(k.Bytes), cost.Money(k.MonthlyCost, currency)))
		}
	}
	kept := "none"
	if len(parts) > 0 {
		kept = strings.Join(parts, ", ")
	}
	return []string{
		fmt.Sprintf("deleted\t%d snapshots holding up to %s (%s/month avoided)", f.Deleted.Snapshots, cost.Bytes(f.Deleted.Bytes), cost.Money(f.Deleted.MonthlyCost, currency)),
		"kept\t" + kept,
		fmt.Sprintf("retention cost\t%s until the retained snapshots' retention ends", cost.Money(f.RetentionCost, currency)),
	}
}
