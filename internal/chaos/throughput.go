package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// callSample is one reading of the fake's call statistics during the
// fault phase.
type callSample struct {
	At          time.Time
	Deleted     int
	DeleteCalls int
	QuotaErrors int
}

// sampler reads the fake's statistics once a second while the Compute
// faults are on, so the run can say how much of the granted quota the
// service used while Compute was sick.
type sampler struct {
	mu      sync.Mutex
	samples []callSample
}

func (s *sampler) run(ctx context.Context, fakeURL string) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		var st computeStats
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := getJSON(qctx, fakeURL+"/fake/calls", &st)
		cancel()
		if err == nil {
			s.add(callSample{At: time.Now(), Deleted: st.Deleted, DeleteCalls: st.ByMethod["snapshots.delete"], QuotaErrors: st.QuotaErrors})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) add(c callSample) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, c)
}

func (s *sampler) all() []callSample {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.samples)
}

// MinuteFigure is what one synchronized wall-clock minute (the window
// Compute counts its rate quotas in) of the fault phase delivered.
type MinuteFigure struct {
	Minute      string  `json:"minute"` // HH:MM, UTC
	Deleted     int     `json:"deleted"`
	QuotaErrors int     `json:"quotaErrors"`
	Ratio       float64 `json:"ratioToQuota"`
}

// FaultThroughput is the cleanup throughput while the Compute faults were
// on, against the quota the fake granted.
type FaultThroughput struct {
	// From the first delete call to the clearing of the faults.
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	DurationS float64   `json:"durationSeconds"`
	// QuotaPerMinute is the fake's delete quota per project and minute.
	QuotaPerMinute int `json:"quotaPerMinute"`
	Deleted        int `json:"deleted"`
	DeleteCalls    int `json:"deleteCalls"`
	QuotaErrors    int `json:"quotaErrors"`
	// Ratio is Deleted ÷ (quota × the phase's length in minutes), over
	// the whole phase, partial minutes pro rata.
	Ratio float64 `json:"ratioToQuota"`
	// Minutes are the whole synchronized minutes inside the phase, and
	// WholeMinuteRatio their deletions ÷ their granted quota (0 when the
	// phase spans no whole minute).
	Minutes          []MinuteFigure `json:"minutes"`
	WholeMinuteRatio float64        `json:"wholeMinuteRatio"`
	// BreakerOpen is how long each serve process's Compute breaker was
	// open (not half-open) inside the phase, from its log.
	BreakerOpen map[string]time.Duration `json:"breakerOpen"`
}

// Figure is the ratio the run judges: whole minutes when the phase has
// any (Compute grants quota per minute, so a partial minute can be above
// or below its share), otherwise the pro-rata ratio.
func (f FaultThroughput) Figure() float64 {
	if len(f.Minutes) > 0 {
		return f.WholeMinuteRatio
	}
	return f.Ratio
}

func (f FaultThroughput) String() string {
	var mins []string
	for _, m := range f.Minutes {
		mins = append(mins, fmt.Sprintf("%s %d (%.2f, %d quota errors)", m.Minute, m.Deleted, m.Ratio, m.QuotaErrors))
	}
	var open []string
	for _, name := range slices.Sorted(maps.Keys(f.BreakerOpen)) {
		open = append(open, fmt.Sprintf("%s %s", name, f.BreakerOpen[name].Round(100*time.Millisecond)))
	}
	return fmt.Sprintf("%d deleted in %s of faults (%d delete calls, %d quota errors) against %d/min: %.2f of the granted quota; whole minutes: [%s] = %.2f; breaker open: %s",
		f.Deleted, time.Duration(f.DurationS*float64(time.Second)).Round(time.Second), f.DeleteCalls, f.QuotaErrors, f.QuotaPerMinute,
		f.Ratio, strings.Join(mins, ", "), f.WholeMinuteRatio, strings.Join(open, ", "))
}

// throughput computes the fault phase's figures from the samples, which
// end at the clearing of the faults (end). The phase starts at the first
// sample that shows a delete call: before it, no cleanup was due yet.
func throughput(samples []callSample, quotaPerMinute int, end time.Time) FaultThroughput {
	f := FaultThroughput{QuotaPerMinute: quotaPerMinute, End: end}
	first := slices.IndexFunc(samples, func(c callSample) bool { return c.DeleteCalls > 0 })
	if first < 0 || quotaPerMinute <= 0 {
		return f
	}
	// The sample before the first delete call is the phase's baseline.
	base := samples[max(first-1, 0)]
	if first == 0 {
		base = callSample{At: samples[0].At}
	}
	last := samples[len(samples)-1]
	f.Start = base.At
	f.DurationS = end.Sub(f.Start).Seconds()
	f.Deleted = last.Deleted - base.Deleted
	f.DeleteCalls = last.DeleteCalls - base.DeleteCalls
	f.QuotaErrors = last.QuotaErrors - base.QuotaErrors
	if f.DurationS > 0 {
		f.Ratio = float64(f.Deleted) / (float64(quotaPerMinute) * f.DurationS / 60)
	}
	// Whole minutes: from the first minute boundary after the start to the
	// last one before the end, each read at the sample nearest its edges.
	at := func(t time.Time) callSample {
		i, _ := slices.BinarySearchFunc(samples, t, func(c callSample, t time.Time) int { return c.At.Compare(t) })
		return samples[min(i, len(samples)-1)]
	}
	var total int
	for m := f.Start.Truncate(time.Minute).Add(time.Minute); !m.Add(time.Minute).After(end); m = m.Add(time.Minute) {
		a, b := at(m), at(m.Add(time.Minute))
		fig := MinuteFigure{Minute: m.UTC().Format("15:04"), Deleted: b.Deleted - a.Deleted, QuotaErrors: b.QuotaErrors - a.QuotaErrors}
		fig.Ratio = float64(fig.Deleted) / float64(quotaPerMinute)
		f.Minutes = append(f.Minutes, fig)
		total += fig.Deleted
	}
	if n := len(f.Minutes); n > 0 {
		f.WholeMinuteRatio = float64(total) / float64(n*quotaPerMinute)
	}
	return f
}

// logLine is the part of a serve log line the breaker accounting reads.
type logLine struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
	To      string    `json:"to"`
}

// breakerOpen sums how long the Compute breaker of the process whose log
// is at path was open within [from, to]. Every incarnation appends to the
// log and starts with a closed breaker ("snapsweep serving"), so a breaker
// open when its process died counts until the restart.
func breakerOpen(path string, from, to time.Time) (time.Duration, error) {
	fh, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer fh.Close()
	var total time.Duration
	var openSince time.Time
	add := func(until time.Time) {
		if openSince.IsZero() {
			return
		}
		a, b := maxTime(openSince, from), minTime(until, to)
		if b.After(a) {
			total += b.Sub(a)
		}
		openSince = time.Time{}
	}
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		var l logLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Time.IsZero() {
			continue
		}
		switch l.Message {
		case "snapsweep serving":
			add(l.Time)
		case "compute circuit breaker changed state":
			add(l.Time)
			if l.To == "open" {
				openSince = l.Time
			}
		}
	}
	add(to)
	return total, sc.Err()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
