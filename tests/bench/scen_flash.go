package main

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// scenarioS2: end-to-end flash purchases through the gateway on a 1,000,000-unit deal, beside
// the seed-style baseline (b) and the sidecar floor (c). Each profile: the main closed-loop
// phase at the reference concurrency (with cost), the concurrency sweep, and the search for
// the sustainable rate.
func (b *bench) scenarioS2(ctx context.Context) error {
	const scen = "S2"
	var deals []string
	for range 3 { // the first, and two more for when the users' 100-unit budgets run out
		d, err := b.seed.flashDeal(ctx, 1_000_000)
		if err != nil {
			return err
		}
		deals = append(deals, d.ID)
	}
	p := &purchases{base: b.stack.GatewayURL(), users: b.users, deals: deals, limit: true, prefix: b.key(scen) + "-"}
	t := &loadTarget{Name: "S2 platform", Next: p.next, Classify: expect("", http.StatusCreated), OnResult: b.orderRecorder(p.build, true)}
	prof := profile(ctx, t, b.platformMeter(), b.opts(true), b.logf)
	b.report.addProfile(scen, "platform: POST /deals/{id}/orders", "S2", &prof, pathNote(prof.Main))
	if err := b.stack.Dead(); err != nil {
		return err
	}
	b.resolveOpen(ctx)
	b.report.setSustainable("S2.sustainable", &prof)
	b.report.set("S2.okps", prof.Main.OKPerSec)
	b.report.set("S2.cpu_ms", prof.Main.CPUPerOKMS)
	for _, d := range deals {
		b.report.Checks = append(b.report.Checks, checkFlashDeal(ctx, b.stack.Redis, scen, d, b.ledger, activeStatuses)...)
	}

	if err := b.floor(ctx); err != nil {
		return err
	}

	var bdeals []string
	for i := range 3 {
		id := fmt.Sprintf("b-s2-%s-%d", b.cfg.Stamp, i)
		if err := b.seedBaselineDeal(ctx, id, 1_000_000); err != nil {
			return err
		}
		bdeals = append(bdeals, id)
	}
	bp := &purchases{base: b.baselineURL, users: b.users, deals: bdeals, limit: true, prefix: b.key(scen) + "-"}
	bt := &loadTarget{Name: "S2 baseline (b)", Next: bp.next, Classify: expect("", http.StatusCreated), OnResult: b.orderRecorder(bp.build, false)}
	bprof := profile(ctx, bt, b.baselineMeter(), b.opts(true), b.logf)
	b.report.addProfile(scen, "baseline (b): same request, seed-style", "S2.baseline", &bprof, "Lua decrement + order SET + confirmed publish per request")
	b.report.setSustainable("S2.baseline.sustainable", &bprof)
	b.report.set("S2.baseline.okps", bprof.Main.OKPerSec)
	b.report.set("S2.baseline.cpu_ms", bprof.Main.CPUPerOKMS)
	for _, d := range bdeals {
		b.report.Checks = append(b.report.Checks, checkBaselineDeal(ctx, b.stack.Redis, scen, d, 1_000_000, b.ledger)...)
	}
	return nil
}

// pathNote summarizes what the sidecars did per successful request of a measurement.
func pathNote(m Measurement) string {
	if m.OK == 0 {
		return ""
	}
	var states, writes, pubs float64
	var egress []string
	for _, id := range sortedKeys(m.Sidecars) {
		st := m.Sidecars[id]
		for _, v := range st.StateOps {
			states += v
		}
		writes += st.StateWrites
		pubs += st.Publishes
		if st.Publishes > 0 {
			egress = append(egress, fmt.Sprintf("%s %.1fms", id, st.EgressLatencyMS))
		}
	}
	n := float64(m.OK)
	note := fmt.Sprintf("per success: %.1f state ops (%.1f writes), %.2f publishes", states/n, writes/n, pubs/n)
	if len(egress) > 0 {
		note += "; publish latency " + strings.Join(egress, ", ")
	}
	var conflicts float64
	var batches []string
	for _, id := range sortedKeys(m.Apps) {
		st := m.Apps[id]
		for _, v := range st.Conflicts {
			conflicts += v
		}
		for _, k := range sortedKeys(st.BatchMeans) {
			batches = append(batches, fmt.Sprintf("%s %.1f", k, st.BatchMeans[k]))
		}
	}
	if conflicts > 0 {
		note += fmt.Sprintf("; %.3f app-counted conflicts per success", conflicts/n)
	}
	if len(batches) > 0 {
		note += "; mean batch " + strings.Join(batches, ", ")
	}
	return note
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// floor measures baseline (c), the sidecar floor, once per run: a no-op call per hop a
// purchase makes (the gateway's daprd → order /healthz; the order's daprd → inventory
// /healthz), each through two sidecars as a real hop is, and the gateway's own /healthz.
// Their serial combination is the floor of the purchase path.
func (b *bench) floor(ctx context.Context) error {
	if _, done := b.report.Values["floor.path"]; done {
		return nil
	}
	tok := b.stack.DaprToken()
	hop := func(name, url string, hdr http.Header) *loadTarget {
		return &loadTarget{
			Name: name,
			Next: func(t *vegeta.Target) error {
				t.Method, t.URL, t.Header = http.MethodGet, url, hdr
				return nil
			},
			Classify: expect("", http.StatusOK),
		}
	}
	daprHdr := http.Header{"Dapr-Api-Token": {tok}}
	targets := []struct {
		key, label string
		t          *loadTarget
	}{
		{"floor.hop1", "(c) hop: gateway's daprd → order /healthz", hop("floor hop1", b.stack.App("gateway").DaprHTTPURL()+"/v1.0/invoke/order/method/healthz", daprHdr)},
		{"floor.hop2", "(c) hop: order's daprd → inventory /healthz", hop("floor hop2", b.stack.App("order").DaprHTTPURL()+"/v1.0/invoke/inventory/method/healthz", daprHdr)},
		{"floor.gateway", "(c) gateway's own /healthz", hop("floor gateway", b.stack.App("gateway").AppURL()+"/healthz", nil)},
	}
	var inv float64
	for _, x := range targets {
		prof := profile(ctx, x.t, b.platformMeter(), b.opts(false), b.logf)
		b.report.addProfile("floor", x.label, x.key, &prof, "")
		b.report.set(x.key, prof.Main.OKPerSec)
		if x.key != "floor.gateway" && prof.Main.OKPerSec > 0 {
			inv += 1 / prof.Main.OKPerSec
		}
	}
	if inv > 0 {
		b.report.set("floor.path", 1/inv)
		b.report.Rows = append(b.report.Rows, Row{Scenario: "floor", Target: "(c) purchase path: hop1 then hop2, serial",
			Load: "c=" + fmt.Sprint(b.cfg.Conc), OKPerSec: 1 / inv, P50MS: b.report.Measurements["floor.hop1"].P50MS + b.report.Measurements["floor.hop2"].P50MS,
			P95MS:  b.report.Measurements["floor.hop1"].P95MS + b.report.Measurements["floor.hop2"].P95MS,
			P99MS:  b.report.Measurements["floor.hop1"].P99MS + b.report.Measurements["floor.hop2"].P99MS,
			Errors: "0", Sustainable: -1, Note: "1/(1/hop1 + 1/hop2); latencies added"})
	}
	return nil
}

// Slice is one tenth of S2-long's sale.
type Slice struct {
	UnitsFrom   int     `json:"units_from"`
	UnitsTo     int     `json:"units_to"`
	Seconds     float64 `json:"seconds"`
	UnitsPerSec float64 `json:"units_per_sec"`
}

// sliceRates splits a sale into 10 slices by units sold (1 unit per answer, ends the answer
// times) and returns each slice's rate. A slice starts where the previous one ended (the first
// at start).
func sliceRates(start time.Time, ends []time.Time) []Slice {
	sorted := append([]time.Time(nil), ends...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Before(sorted[j]) })
	total := len(sorted)
	if total < 10 {
		return nil
	}
	var out []Slice
	from, t0 := 0, start
	for k := 1; k <= 10; k++ {
		to := k * total / 10
		t1 := sorted[to-1]
		s := Slice{UnitsFrom: from, UnitsTo: to, Seconds: t1.Sub(t0).Seconds()}
		if s.Seconds > 0 {
			s.UnitsPerSec = float64(to-from) / s.Seconds
		}
		out = append(out, s)
		from, t0 = to, t1
	}
	return out
}

// scenarioS2Long sells a whole deal (--units, 200,000 in issue 10) at the reference
// concurrency and reports the rate of each tenth of the sale, then the largest documents.
func (b *bench) scenarioS2Long(ctx context.Context) error {
	const scen = "S2-long"
	units := b.cfg.LongUnits
	if err := b.ensureUsers(ctx, (units+maxPerUser-1)/maxPerUser+1); err != nil {
		return err
	}
	d, err := b.seed.flashDeal(ctx, units)
	if err != nil {
		return err
	}
	var mu sync.Mutex
	var ends []time.Time
	var soldOut atomic.Bool
	p := &purchases{base: b.stack.GatewayURL(), users: b.users, deals: []string{d.ID}, limit: true, prefix: b.key(scen) + "-"}
	record := b.orderRecorder(p.build, true)
	t := &loadTarget{
		Name:     "S2-long platform",
		Next:     p.next,
		Classify: expect("", http.StatusCreated),
		OnResult: func(r *vegeta.Result, label string) {
			record(r, label)
			switch {
			case label == "":
				mu.Lock()
				ends = append(ends, r.End())
				mu.Unlock()
			case strings.Contains(label, "sold-out"):
				soldOut.Store(true)
			}
		},
		Done: func() bool {
			mu.Lock()
			defer mu.Unlock()
			return soldOut.Load() || len(ends) >= units
		},
	}
	start := time.Now()
	m := b.platformMeter().measure(ctx, func() Summary { return attack(ctx, t, b.cfg.Conc, 0, b.cfg.LongMax) })
	b.report.Slices = sliceRates(start, ends)
	note := fmt.Sprintf("%d of %d units sold in %.0fs", len(ends), units, time.Since(start).Seconds())
	if len(ends) < units {
		note += fmt.Sprintf(" (stopped at --long-max %s: slices cover the units sold)", b.cfg.LongMax)
	}
	if n := len(b.report.Slices); n == 10 {
		first, last := b.report.Slices[0].UnitsPerSec, b.report.Slices[9].UnitsPerSec
		b.report.set("S2-long.first", first)
		b.report.set("S2-long.last", last)
		note += fmt.Sprintf("; first 10%% %.1f/s, last 10%% %.1f/s", first, last)
	}
	b.report.addMeasurement(scen, "platform: sell one deal out", "S2-long", m, note)
	b.logf("  %s", note)
	// The largest document the sale wrote to: this deal's stock documents, and the order
	// app's pending and per-user documents (shared by every deal, so S2's count too).
	sizes, err := scanSizes(ctx, b.stack.Redis)
	if err != nil {
		return err
	}
	b.report.LongSizes = sizes
	largest, err := stockDocSize(ctx, b.stack.Redis, d.ID)
	if err != nil {
		return err
	}
	for _, f := range sizes {
		if strings.HasPrefix(f.Family, "order||pending") || strings.HasPrefix(f.Family, "order||user") {
			largest = max(largest, f.MaxBytes)
		}
	}
	b.report.set("S2-long.largest_kb", float64(largest)/1024)
	b.resolveOpen(ctx)
	b.report.Checks = append(b.report.Checks, checkFlashDeal(ctx, b.stack.Redis, scen, d.ID, b.ledger, activeStatuses)...)
	return nil
}

// scenarioS3: purchases of a sold-out deal, beside the baseline's sold-out answers, counting
// the state writes the sidecars on the purchase path make per refused purchase.
func (b *bench) scenarioS3(ctx context.Context) error {
	const scen = "S3"
	const stock = 20
	d, err := b.seed.flashDeal(ctx, stock)
	if err != nil {
		return err
	}
	if _, err := b.placeOrders(ctx, d.ID, stock, scen); err != nil {
		return err
	}
	pathApps := []string{"gateway", "order", "inventory", "catalog"}
	// One purchase finds the deal sold out first: it is the one that learns it the expensive
	// way (the order app claims its key, reserves and undoes), so its writes are reported apart
	// from those of the refusals that follow.
	dp := &purchases{base: b.stack.GatewayURL(), users: b.users, deals: []string{d.ID}, prefix: b.key(scen) + "-discovery-"}
	var discovered atomic.Bool
	disc := &loadTarget{Name: "S3 discovery", Classify: expect("sold-out", http.StatusConflict), OnResult: b.orderRecorder(dp.build, true),
		Next: func(t *vegeta.Target) error {
			if discovered.Swap(true) {
				return errDone
			}
			return dp.build(0, t)
		}}
	dm := b.platformMeter().measure(ctx, func() Summary { return attack(ctx, disc, 1, 0, time.Minute) })
	var discWrites float64
	for _, id := range pathApps {
		discWrites += dm.Sidecars[id].StateWrites
	}
	// Background writes on the path apps' sidecars (expiry ticks, relays) in an idle window,
	// so a reader can tell them from the refused purchases' own.
	const idleWindow = 5 * time.Second
	idle := b.platformMeter().measure(ctx, func() Summary {
		time.Sleep(idleWindow)
		return Summary{Seconds: idleWindow.Seconds()}
	})
	var idleWrites float64
	for _, id := range pathApps {
		idleWrites += idle.Sidecars[id].StateWrites
	}

	p := &purchases{base: b.stack.GatewayURL(), users: b.users, deals: []string{d.ID}, prefix: b.key(scen) + "-"}
	t := &loadTarget{Name: "S3 platform sold out", Next: p.next, Classify: expect("sold-out", http.StatusConflict), OnResult: b.orderRecorder(p.build, true)}
	prof := profile(ctx, t, b.platformMeter(), b.opts(false), b.logf)
	b.resolveOpen(ctx)
	var writes float64
	var per []string
	for _, id := range pathApps {
		w := prof.Main.Sidecars[id].StateWrites
		writes += w
		if w > 0 {
			per = append(per, fmt.Sprintf("%s %.0f", id, w))
		}
	}
	// The refusals' own writes: what the phase wrote beyond the background's idle rate (the
	// expiry ticks, the relay's lease and cursor write on their own schedule, refusals or not).
	idleRate := idleWrites / idleWindow.Seconds()
	own := max(writes-idleRate*prof.Main.Seconds, 0)
	wpo := 0.0
	if prof.Main.OK > 0 {
		wpo = own / float64(prof.Main.OK)
	}
	note := fmt.Sprintf("%.4f state writes per refused purchase on the path's sidecars beyond the background (%.0f written in %.0fs: %s; %.1f writes/s there when idle); the first refusal, before the run, wrote %.0f (%s)",
		wpo, writes, prof.Main.Seconds, strings.Join(per, ", "), idleRate, discWrites, oneLine(dm.Summary))
	b.report.addProfile(scen, "platform: purchase of a sold-out deal", "S3", &prof, note)
	b.report.set("S3.okps", prof.Main.OKPerSec)
	b.report.set("S3.writes_per_op", wpo)
	b.report.Checks = append(b.report.Checks, checkFlashDeal(ctx, b.stack.Redis, scen, d.ID, b.ledger, activeStatuses)...)
	if lv, err := readStock(ctx, b.stack.Redis, d.ID); err == nil && lv.Available != 0 {
		b.report.Checks = append(b.report.Checks, fail(scen, "deal "+d.ID+": sold out", "%d units still available", lv.Available))
	}

	bid := "b-s3-" + b.cfg.Stamp
	if err := b.seedBaselineDeal(ctx, bid, stock); err != nil {
		return err
	}
	bp := &purchases{base: b.baselineURL, users: b.users, deals: []string{bid}, prefix: b.key(scen) + "-"}
	buy := &loadTarget{Name: "S3 baseline setup", Next: bp.next, Classify: expect("", http.StatusCreated), OnResult: b.orderRecorder(bp.build, false),
		Done: func() bool { _, units, _, _ := b.ledger.deal(bid); return units >= stock }}
	attack(ctx, buy, 1, 0, time.Minute)
	bt := &loadTarget{Name: "S3 baseline (b) sold out", Next: bp.next, Classify: expect("sold-out", http.StatusConflict), OnResult: b.orderRecorder(bp.build, false)}
	bprof := profile(ctx, bt, b.baselineMeter(), b.opts(false), b.logf)
	b.report.addProfile(scen, "baseline (b): sold-out answers", "S3.baseline", &bprof, "")
	b.report.set("S3.baseline.okps", bprof.Main.OKPerSec)
	b.report.Checks = append(b.report.Checks, checkBaselineDeal(ctx, b.stack.Redis, scen, bid, stock, b.ledger)...)
	return nil
}
