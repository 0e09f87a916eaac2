package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/groupbuy/groupbuy/pkg/ids"
)

// readApps are the apps whose sidecars R counts state reads on during the unknown-id phase:
// the two a public read passes through before an id is known to exist.
var readApps = []string{"gateway", "catalog"}

// scenarioR: anonymous public reads, the targets of the fast-reads issue, beside the
// seed-style baseline's deal read (b) of the same run. Each target is a main phase at the
// reference concurrency:
//
//   - GET /deals/{id} of a deal with --r-orders orders on it (bought through the gateway
//     first: a read must not slow with the orders on a deal), and of a fresh deal;
//   - GET /products/{id};
//   - GET /deals/{id} and /products/{id} of ids that do not exist, every request a different
//     id (unknownIDs), counting the state reads the gateway's and catalog's sidecars make
//     meanwhile: the issue asks for none.
//
// Plain GETs without If-None-Match, as the baseline is asked: a 304 is not a read answered.
func (b *bench) scenarioR(ctx context.Context) error {
	const scen = "R"
	n := b.cfg.ROrders
	busy, err := b.seed.flashDeal(ctx, n+1000) // never sold out: the read of a deal on sale
	if err != nil {
		return err
	}
	fresh, err := b.seed.flashDeal(ctx, 1000)
	if err != nil {
		return err
	}
	orders, err := b.placeOrders(ctx, busy.ID, n, scen)
	if err != nil {
		return err
	}
	b.report.set("R.deal.orders", float64(len(orders)))
	deals := []string{busy.ID, fresh.ID}
	before := map[string]StockLevels{}
	for _, id := range deals {
		if before[id], err = readStock(ctx, b.stack.Redis, id); err != nil {
			return err
		}
	}

	get := func(name, url string) *loadTarget {
		return &loadTarget{
			Name:     name,
			Next:     func(t *vegeta.Target) error { t.Method, t.URL = http.MethodGet, url; return nil },
			Classify: expect("", http.StatusOK),
		}
	}
	gw := b.stack.GatewayURL()
	for _, x := range []struct {
		key, label string
		t          *loadTarget
	}{
		{"R.deal", fmt.Sprintf("platform: GET /deals/{id}, %d orders on it", len(orders)), get("R deal with orders", gw+"/deals/"+busy.ID)},
		{"R.deal.fresh", "platform: GET /deals/{id}, fresh deal", get("R fresh deal", gw+"/deals/"+fresh.ID)},
		{"R.product", "platform: GET /products/{id}", get("R product", gw+"/products/"+busy.ProductID)},
	} {
		prof := profile(ctx, x.t, b.platformMeter(), b.opts(false), b.logf)
		b.report.addProfile(scen, x.label, x.key, &prof, pathNote(prof.Main))
		b.report.set(x.key+".okps", prof.Main.OKPerSec)
		b.report.set(x.key+".p95_ms", prof.Main.P95MS)
		if err := b.stack.Dead(); err != nil {
			return err
		}
	}

	if err := b.unknownReads(ctx, scen); err != nil {
		return err
	}

	bid := "b-r-" + b.cfg.Stamp
	if err := b.seedBaselineDeal(ctx, bid, 1000); err != nil {
		return err
	}
	bprof := profile(ctx, get("R baseline deal", b.baselineURL+"/deals/"+bid), b.baselineMeter(), b.opts(false), b.logf)
	b.report.addProfile(scen, "baseline (b): GET /deals/{id}", "R.baseline", &bprof, "")
	b.report.set("R.baseline.okps", bprof.Main.OKPerSec)

	b.report.Checks = append(b.report.Checks, checkFlashDeal(ctx, b.stack.Redis, scen, busy.ID, b.ledger, activeStatuses)...)
	for _, id := range deals {
		b.report.Checks = append(b.report.Checks, checkUntouched(ctx, b, scen, id, before[id]))
	}
	return nil
}

// checkUntouched checks that a deal's stock is what it was before the reads.
func checkUntouched(ctx context.Context, b *bench, scen, dealID string, before StockLevels) Check {
	name := "deal " + dealID + ": stock untouched by reads"
	after, err := readStock(ctx, b.stack.Redis, dealID)
	switch {
	case err != nil:
		return fail(scen, name, "%v", err)
	case after != before:
		return fail(scen, name, "before %+v, after %+v", before, after)
	}
	return pass(scen, name, "stock %d: %d available, %d reserved, %d sold, as before", after.Stock, after.Available, after.Reserved, after.Sold)
}

// unknownReads measures reads of ids that do not exist, and the state reads the gateway's and
// catalog's sidecars make meanwhile beyond what they read when idle (measured first, as S3
// does for writes).
func (b *bench) unknownReads(ctx context.Context, scen string) error {
	known, err := catalogIDs(ctx, b.stack.Redis)
	if err != nil {
		return fmt.Errorf("catalog ids: %w", err)
	}
	idleWindow := 5 * time.Second
	if b.cfg.Smoke {
		idleWindow = 2 * time.Second
	}
	idle := b.platformMeter().measure(ctx, func() Summary {
		select {
		case <-time.After(idleWindow):
		case <-ctx.Done():
		}
		return Summary{Seconds: idleWindow.Seconds()}
	})
	var idleReads float64
	for _, id := range readApps {
		idleReads += idle.Sidecars[id].StateReads
	}

	u := newUnknownIDs(b.stack.GatewayURL(), func(id string) bool { return known[id] })
	errsByKind := map[string]int{}
	t := &loadTarget{
		Name:     "R unknown ids",
		Next:     u.next,
		Classify: expect("not-found", http.StatusNotFound),
		OnResult: func(r *vegeta.Result, label string) {
			if label != "" {
				errsByKind[idKind(idOfURL(r.URL), r.Timestamp)+" "+label]++
			}
		},
	}
	prof := profile(ctx, t, b.platformMeter(), b.opts(false), b.logf)

	var raw float64
	var per []string
	for _, id := range readApps {
		st := prof.Main.Sidecars[id]
		raw += st.StateReads
		var ops []string
		for _, op := range sortedKeys(st.StateOps) {
			ops = append(ops, fmt.Sprintf("%s %.0f", op, st.StateOps[op]))
		}
		if len(ops) == 0 {
			ops = []string{"none"}
		}
		per = append(per, id+": "+strings.Join(ops, ", "))
	}
	idleRate := idleReads / idleWindow.Seconds()
	// The gateway's read cache rebuilds its Bloom filter from the catalog's id listing once a
	// minute (two index-document reads each), which the 5 s idle window rarely sees: those
	// reads are the cache's upkeep, not the unknown ids', and are taken out by count.
	rc := prof.Main.Apps["gateway"].ReadCache
	rebuilds := rc["rebuilds.ok"] + rc["rebuilds.error"]
	lookups := rc["loads.found"] + rc["loads.not_found"] + rc["loads.error"]
	own := max(raw-idleRate*prof.Main.Seconds-2*rebuilds, 0)
	rpo := 0.0
	if prof.Main.OK > 0 {
		rpo = own / float64(prof.Main.OK)
	}
	note := fmt.Sprintf("%d distinct ids (half well-formed Snowflake ids 1 min-1 h old that do not exist, half malformed: letters, negative, 30 digits, future timestamp; deals and products alike); "+
		"%.0f state reads on the gateway's and catalog's sidecars beyond the background (%.4f per answer; %.0f in %.0fs, %.1f reads/s there when idle, %.0f Bloom filter rebuilds of 2 reads each; state ops %s); "+
		"the gateway's read cache asked the catalog %.0f times and refused %s",
		u.issued(), own, rpo, raw, prof.Main.Seconds, idleRate, rebuilds, strings.Join(per, "; "), lookups, refusals(rc))
	if len(errsByKind) > 0 {
		note += "; errors by kind of id: " + kindCounts(errsByKind)
	}
	b.report.addProfile(scen, "platform: GET /deals|products/{unknown id}", "R.unknown", &prof, note)
	b.report.set("R.unknown.okps", prof.Main.OKPerSec)
	b.report.set("R.unknown.p95_ms", prof.Main.P95MS)
	b.report.set("R.unknown.state_reads", own)
	b.report.set("R.unknown.state_reads_raw", raw)
	b.report.set("R.unknown.cache_lookups", lookups)
	b.report.set("R.unknown.reads_per_op", rpo)
	return nil
}

// refusals lists the read cache's refusals by reason ("malformed 100, bloom_absent 90").
func refusals(rc map[string]float64) string {
	var parts []string
	for _, k := range sortedKeys(rc) {
		if r, ok := strings.CutPrefix(k, "refusals."); ok {
			parts = append(parts, fmt.Sprintf("%s %.0f", r, rc[k]))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func kindCounts(m map[string]int) string {
	keys := sortedKeys(m)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// Snowflake layout of pkg/ids: 41 bits of milliseconds since ids.Epoch, then 22 bits of node
// (10) and sequence (12).
const (
	snowLowBits = 22
	snowLowMask = 1<<snowLowBits - 1
)

// unknownIDs builds the requests of R's unknown-id phase. Request i asks for a different id
// than every other request (up to 2^22 requests), so a per-id negative cache answers none of
// them from an earlier miss: the ids a cache can refuse without the store are the ones it
// knows cannot exist. Of every 8 requests, 4 carry a well-formed id that does not exist (a
// Snowflake id whose timestamp is 1 minute to 1 hour old, random node and sequence) and 4 a
// malformed one (letters, a negative number, 30 digits, a timestamp in the future), for
// /deals and /products alike.
type unknownIDs struct {
	base string
	// exists reports whether an id is a real product's or deal's; such ids are skipped (the
	// catalog creates none while R measures, so the ids stored before are all there are).
	exists func(string) bool
	now    func() time.Time
	// mul (odd) and off make i → (i*mul + off) mod 2^22 a random-looking permutation: the
	// node and sequence bits of request i, distinct for distinct i.
	mul, off uint64
	n        atomic.Int64
}

func newUnknownIDs(base string, exists func(string) bool) *unknownIDs {
	return &unknownIDs{base: base, exists: exists, now: time.Now, mul: rand.Uint64() | 1, off: rand.Uint64()}
}

func (u *unknownIDs) next(t *vegeta.Target) error {
	i := u.n.Add(1) - 1
	resource, id := u.id(i)
	t.Method, t.URL = http.MethodGet, u.base+"/"+resource+"/"+url.PathEscape(id)
	return nil
}

func (u *unknownIDs) issued() int64 { return u.n.Load() }

// id returns the resource ("deals" or "products") and the id of request i.
func (u *unknownIDs) id(i int64) (string, string) {
	slot := i % 8
	resource := "deals"
	if (slot+i/8)%2 == 1 {
		resource = "products"
	}
	low := (uint64(i)*u.mul + u.off) & snowLowMask
	now := u.now()
	switch slot {
	case 4:
		return resource, "abc" + letters(i)
	case 5:
		return resource, "-5" + strconv.FormatInt(i, 10)
	case 6:
		return resource, fmt.Sprintf("9%011d%018d", i%1e11, rand.Int64N(1e18))
	case 7:
		ms := now.Add(time.Minute).Sub(ids.Epoch).Milliseconds() + rand.Int64N(int64(24*time.Hour/time.Millisecond))
		return resource, strconv.FormatInt(ms<<snowLowBits|int64(low), 10)
	}
	for {
		age := time.Minute + time.Duration(rand.Int64N(int64(59*time.Minute)))
		ms := now.Add(-age).Sub(ids.Epoch).Milliseconds()
		id := strconv.FormatInt(ms<<snowLowBits|int64(low), 10)
		if !u.exists(id) {
			return resource, id
		}
	}
}

// letters renders i in base 26, a..z.
func letters(i int64) string {
	var out []byte
	for {
		out = append(out, byte('a'+i%26))
		i /= 26
		if i == 0 {
			return string(out)
		}
	}
}

// idOfURL is the last path segment of a read's URL.
func idOfURL(u string) string {
	u, _, _ = strings.Cut(u, "?")
	s := u[strings.LastIndexByte(u, '/')+1:]
	if un, err := url.PathUnescape(s); err == nil {
		return un
	}
	return s
}

// idKind names the kind of an id unknownIDs made, as of when it was sent.
func idKind(id string, at time.Time) string {
	switch {
	case strings.HasPrefix(id, "abc"):
		return "letters"
	case strings.HasPrefix(id, "-"):
		return "negative"
	case len(id) == 30:
		return "30-digit"
	}
	v, err := strconv.ParseInt(id, 10, 64)
	switch {
	case err != nil:
		return "other"
	case ids.Time(v).After(at):
		return "future"
	}
	return "well-formed"
}
