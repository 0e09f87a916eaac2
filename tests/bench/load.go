package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// loadTarget is something the bench puts load on: where requests go, and how an answer is
// judged. Next must be safe for concurrent use (vegeta's workers call it at once); OnResult
// is called from one goroutine per attack.
type loadTarget struct {
	Name string
	// Next fills the next request; an error ends the attack (e.g. the seeded users ran out
	// of purchase budget).
	Next func(t *vegeta.Target) error
	// Classify returns "" for an expected answer, else a short label ("409 sold-out").
	Classify func(code int, body []byte) string
	// OnResult sees every answer (e.g. to record created orders); may be nil.
	OnResult func(r *vegeta.Result, label string)
	// Done, checked after every answer, ends the attack early when true (e.g. sold out).
	Done func() bool
}

// Summary is one load phase: closed-loop at a concurrency, or open-loop at a rate.
type Summary struct {
	Target      string         `json:"target"`
	Mode        string         `json:"mode"` // "closed" or "open"
	Concurrency int            `json:"concurrency,omitempty"`
	OfferedRate float64        `json:"offered_rate,omitempty"`
	SentRate    float64        `json:"sent_rate"`
	Requests    int            `json:"requests"`
	OK          int            `json:"ok"`
	OKPerSec    float64        `json:"ok_per_sec"`
	ErrorRate   float64        `json:"error_rate"`
	Errors      map[string]int `json:"errors,omitempty"`
	P50MS       float64        `json:"p50_ms"`
	P95MS       float64        `json:"p95_ms"`
	P99MS       float64        `json:"p99_ms"`
	Seconds     float64        `json:"seconds"`
	Stopped     string         `json:"stopped,omitempty"` // why the attack ended early
	// HDR is vegeta's HdrHistogram plot of the phase's latencies (the format the
	// HdrHistogram plotter reads), for the main phases the report writes out.
	HDR string `json:"-"`
}

// Sustainable reports whether the phase met the service objective: p95 under slo, errors
// under 0.1 %, and the offered rate actually sent.
func (s Summary) Sustainable(slo time.Duration) bool {
	if s.Requests == 0 || s.ErrorRate >= 0.001 || s.P95MS >= ms(slo) {
		return false
	}
	return s.Mode != "open" || s.SentRate >= 0.95*s.OfferedRate
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// attackOptions tune the HTTP client for an attack.
const (
	requestTimeout = 10 * time.Second
	maxOpenWorkers = 2048
)

// attack runs one phase: closed-loop with conc workers when rate is 0, else open-loop at rate
// requests per second (vegeta's constant pacer; workers grow as answers lag, up to
// maxOpenWorkers).
func attack(ctx context.Context, t *loadTarget, conc int, rate float64, dur time.Duration) Summary {
	var opts []func(*vegeta.Attacker)
	pacer := vegeta.Rate{Freq: 0}
	s := Summary{Target: t.Name}
	if rate > 0 {
		s.Mode, s.OfferedRate = "open", rate
		pacer = vegeta.Rate{Freq: int(math.Round(rate)), Per: time.Second}
		opts = append(opts, vegeta.Workers(64), vegeta.MaxWorkers(maxOpenWorkers), vegeta.Connections(maxOpenWorkers))
	} else {
		s.Mode, s.Concurrency = "closed", conc
		opts = append(opts, vegeta.Workers(uint64(conc)), vegeta.MaxWorkers(uint64(conc)), vegeta.Connections(max(conc, 64)))
	}
	opts = append(opts, vegeta.Timeout(requestTimeout), vegeta.KeepAlive(true), vegeta.Redirects(vegeta.NoFollow))
	atk := vegeta.NewAttacker(opts...)
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()

	var m vegeta.Metrics
	s.Errors = map[string]int{}
	for r := range atk.Attack(vegeta.Targeter(t.Next), pacer, dur, t.Name) {
		if r.Error != "" && r.Code == 0 && r.Method == "" {
			// The targeter refused: the attack is ending on purpose.
			s.Stopped = r.Error
			continue
		}
		m.Add(r)
		label := ""
		switch {
		case r.Code == 0:
			label = "transport: " + shortError(r.Error)
		default:
			label = t.Classify(int(r.Code), r.Body)
		}
		if label == "" {
			s.OK++
		} else {
			s.Errors[label]++
		}
		if t.OnResult != nil {
			t.OnResult(r, label)
		}
		if t.Done != nil && t.Done() {
			atk.Stop()
		}
	}
	m.Close()
	s.Requests = int(m.Requests)
	s.Seconds = (m.Duration + m.Wait).Seconds()
	if s.Seconds > 0 {
		s.OKPerSec = float64(s.OK) / s.Seconds
	}
	s.SentRate = m.Rate
	if s.Requests > 0 {
		s.ErrorRate = float64(s.Requests-s.OK) / float64(s.Requests)
	}
	s.P50MS, s.P95MS, s.P99MS = ms(m.Latencies.P50), ms(m.Latencies.P95), ms(m.Latencies.P99)
	var hdr strings.Builder
	if m.Requests > 0 && vegeta.NewHDRHistogramPlotReporter(&m).Report(&hdr) == nil {
		s.HDR = hdr.String()
	}
	return s
}

func shortError(e string) string {
	switch {
	case strings.Contains(e, "Client.Timeout"), strings.Contains(e, "deadline exceeded"):
		return "timeout"
	case strings.Contains(e, "connection refused"):
		return "connection refused"
	case strings.Contains(e, "connection reset"):
		return "connection reset"
	}
	if len(e) > 60 {
		e = e[:60]
	}
	return e
}

// problemCode returns the "code" member of a problem document, or "".
func problemCode(body []byte) string {
	var p struct {
		Code string `json:"code"`
	}
	_ = json.Unmarshal(body, &p)
	return p.Code
}

// expect returns a Classify that accepts the given statuses (and, if code is set, only
// problem documents with that code).
func expect(code string, statuses ...int) func(int, []byte) string {
	return func(status int, body []byte) string {
		if slices.Contains(statuses, status) && (code == "" || problemCode(body) == code) {
			return ""
		}
		if c := problemCode(body); c != "" {
			return fmt.Sprintf("%d %s", status, c)
		}
		return fmt.Sprintf("%d", status)
	}
}

// unknownOutcome reports whether an answer leaves open whether the request took effect (no
// answer, or a server error).
func unknownOutcome(r *vegeta.Result) bool { return r.Code == 0 || r.Code >= 500 }

// openOutcome is unknownOutcome, plus 409 idempotency-key-in-use: under overload the
// platform's own retry of a timed-out call meets the first attempt still running, which may
// yet succeed. A client retries such a request with the same Idempotency-Key.
func openOutcome(r *vegeta.Result) bool {
	return unknownOutcome(r) || (r.Code == http.StatusConflict && problemCode(r.Body) == "idempotency-key-in-use")
}

// seqParam carries a request's sequence number in its URL (the gateway forwards the path
// only, and the baseline ignores queries), so a request whose outcome was open can be rebuilt
// and replayed with the same Idempotency-Key.
const seqParam = "bench_seq"

func withSeq(url string, i int64) string {
	return url + "?" + seqParam + "=" + strconv.FormatInt(i, 10)
}

func seqOf(url string) (int64, bool) {
	_, q, ok := strings.Cut(url, "?"+seqParam+"=")
	if !ok {
		return 0, false
	}
	i, err := strconv.ParseInt(q, 10, 64)
	return i, err == nil
}

// Profile is a target's measurement: the reference closed-loop phase with its cost and
// metrics, the concurrency sweep, and the open-loop rate search.
type Profile struct {
	Target      string      `json:"target"`
	Main        Measurement `json:"main"`
	Sweep       []Summary   `json:"sweep,omitempty"`
	Rates       []Summary   `json:"rates,omitempty"`
	Sustainable float64     `json:"sustainable_rate"` // highest rate meeting the objective, 0 if none
	SLOMS       float64     `json:"slo_p95_ms"`
}

// Measurement is a load phase with what it cost.
type Measurement struct {
	Summary
	Cost        Cost                    `json:"cost"`
	CPUPerOKMS  float64                 `json:"cpu_per_ok_ms"`
	CoresFor50k float64                 `json:"cores_for_50k_per_sec"`
	Sidecars    map[string]SidecarStats `json:"sidecars,omitempty"`
	Apps        map[string]AppStats     `json:"apps,omitempty"`
}

// meter is where a measurement reads cost and metrics: the processes whose CPU counts and the
// /metrics endpoints of apps and sidecars (by app id), any of which may be empty.
type meter struct {
	procs    func() []proc
	appURLs  map[string]string
	sideURLs map[string]string
}

type meterSnap struct {
	cost  costSnapshot
	apps  map[string]scrape
	sides map[string]scrape
}

// snap scrapes the metrics endpoints and samples procs (the same list before and after a
// phase, by pid, so a process restarted meanwhile is not mixed with its predecessor).
func (m meter) snap(ctx context.Context, procs []proc) meterSnap {
	hc := &http.Client{Timeout: 5 * time.Second}
	s := meterSnap{apps: map[string]scrape{}, sides: map[string]scrape{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id, u := range m.appURLs {
		wg.Go(func() {
			if sc, err := fetchScrape(ctx, hc, u); err == nil {
				mu.Lock()
				s.apps[id] = sc
				mu.Unlock()
			}
		})
	}
	for id, u := range m.sideURLs {
		wg.Go(func() {
			if sc, err := fetchScrape(ctx, hc, u); err == nil {
				mu.Lock()
				s.sides[id] = sc
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	s.cost = snapshot(procs)
	return s
}

// measure runs fn between two snapshots and fills the cost and metric deltas of ms.
func (m meter) measure(ctx context.Context, fn func() Summary) Measurement {
	var procs []proc
	if m.procs != nil {
		procs = m.procs()
	}
	before := m.snap(ctx, procs)
	sum := fn()
	after := m.snap(ctx, procs)
	out := Measurement{Summary: sum, Sidecars: map[string]SidecarStats{}, Apps: map[string]AppStats{}}
	if m.procs != nil {
		out.Cost = costBetween(before.cost, after.cost)
		if sum.OK > 0 {
			out.CPUPerOKMS = out.Cost.CPUSeconds * 1000 / float64(sum.OK)
			out.CoresFor50k = out.Cost.CPUSeconds / float64(sum.OK) * 50_000
		}
	}
	for id, a := range after.apps {
		if b, ok := before.apps[id]; ok {
			out.Apps[id] = appStats(delta(b, a))
		}
	}
	for id, a := range after.sides {
		if b, ok := before.sides[id]; ok {
			out.Sidecars[id] = sidecarStats(delta(b, a))
		}
	}
	return out
}

// profileOpts say how much of the profile to run.
type profileOpts struct {
	Conc     int           // reference concurrency of the main phase
	Duration time.Duration // main phase
	Step     time.Duration // each sweep level and rate step
	Sweep    []int         // other concurrencies, closed loop
	Search   bool          // open-loop search of the sustainable rate
	SLO      time.Duration // p95 objective
	Smoke    bool          // one short open-loop step instead of the search
	// Alive, when set, is asked after every phase; an error ends the profile (a process of
	// the stack died: what follows would measure nothing).
	Alive func() error
}

// profile measures a target: the main closed-loop phase (with cost), the sweep, the search.
func profile(ctx context.Context, t *loadTarget, m meter, o profileOpts, logf func(string, ...any)) Profile {
	p := Profile{Target: t.Name, SLOMS: ms(o.SLO)}
	dead := func() bool {
		if o.Alive == nil {
			return false
		}
		if err := o.Alive(); err != nil {
			logf("  %s: stopping: %v", t.Name, err)
			return true
		}
		return false
	}
	p.Main = m.measure(ctx, func() Summary { return attack(ctx, t, o.Conc, 0, o.Duration) })
	logf("  %-28s c=%-4d %s", t.Name, o.Conc, oneLine(p.Main.Summary))
	if ctx.Err() != nil || p.Main.Stopped != "" || dead() {
		return p
	}
	for _, c := range o.Sweep {
		s := attack(ctx, t, c, 0, o.Step)
		logf("  %-28s c=%-4d %s", t.Name, c, oneLine(s))
		p.Sweep = append(p.Sweep, s)
		if ctx.Err() != nil || s.Stopped != "" || dead() {
			return p
		}
	}
	if !o.Search && !o.Smoke {
		return p
	}
	best := p.Main.OKPerSec
	for _, s := range p.Sweep {
		best = max(best, s.OKPerSec)
	}
	if best <= 0 {
		return p
	}
	step := func(rate float64) bool {
		if dead() {
			return false
		}
		s := attack(ctx, t, 0, rate, o.Step)
		ok := s.Sustainable(o.SLO)
		logf("  %-28s rate=%-7.0f %s sustainable=%t", t.Name, rate, oneLine(s), ok)
		p.Rates = append(p.Rates, s)
		if ok {
			p.Sustainable = max(p.Sustainable, rate)
		}
		return ok
	}
	if o.Smoke {
		step(math.Max(1, math.Round(best/2)))
		return p
	}
	// A ladder around the best closed-loop throughput, then two bisections between the
	// highest rate that held and the lowest that did not.
	lowestFail := math.Inf(1)
	for _, f := range []float64{0.25, 0.5, 0.75, 1.0, 1.25} {
		r := math.Max(1, math.Round(best*f))
		if ctx.Err() != nil || dead() {
			return p
		}
		if !step(r) {
			lowestFail = r
			break
		}
	}
	for range 2 {
		if math.IsInf(lowestFail, 1) || ctx.Err() != nil || dead() || lowestFail-p.Sustainable < math.Max(2, 0.05*lowestFail) {
			break
		}
		mid := math.Round((p.Sustainable + lowestFail) / 2)
		if !step(mid) {
			lowestFail = mid
		}
	}
	sort.Slice(p.Rates, func(i, j int) bool { return p.Rates[i].OfferedRate < p.Rates[j].OfferedRate })
	return p
}

func oneLine(s Summary) string {
	var errs []string
	for k, v := range s.Errors {
		errs = append(errs, fmt.Sprintf("%s×%d", k, v))
	}
	sort.Strings(errs)
	line := fmt.Sprintf("ok/s=%-8.1f p50=%-7.1f p95=%-7.1f p99=%-7.1f n=%d", s.OKPerSec, s.P50MS, s.P95MS, s.P99MS, s.Requests)
	if len(errs) > 0 {
		line += " errors=" + strings.Join(errs, ",")
	}
	if s.Stopped != "" {
		line += " stopped=" + s.Stopped
	}
	return line
}
