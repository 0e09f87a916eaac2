package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/groupbuy/groupbuy/tests/bench/baseline"
)

// scenarioS1: hot-deal reservations in inventory's engine. (a) per-request Lua EVALSHA from
// this process; the engine (stock.Service, run by apps/inventory/internal/stockbench) over a
// daprd of its own, one process and then three on one deal; and reservations through the
// inventory app's HTTP API and sidecar. Each reserves 1 unit per new order id on a deal that
// never runs out.
func (b *bench) scenarioS1(ctx context.Context) error {
	const scen = "S1"
	dur := b.cfg.Duration

	// (a) per-request Lua.
	lua, luaOK, luaLeft, err := b.luaRun(ctx, b.cfg.S1Conc, dur)
	if err != nil {
		return err
	}
	b.report.addMeasurement(scen, "(a) Lua EVALSHA per request", "S1.lua", lua, fmt.Sprintf("%d goroutines", b.cfg.S1Conc))
	b.report.set("S1.lua.okps", lua.OKPerSec)
	b.logf("  %-28s c=%-4d %s", "lua", b.cfg.S1Conc, oneLine(lua.Summary))
	if taken := luaStock - luaLeft; taken < luaOK || taken > luaOK+int64(lua.Requests-lua.OK) {
		b.report.Checks = append(b.report.Checks, fail(scen, "(a) Lua: units taken == successes", "%d taken, %d successes", taken, luaOK))
	} else {
		b.report.Checks = append(b.report.Checks, pass(scen, "(a) Lua: units taken == successes", "%d units, none below zero (%d left)", taken, luaLeft))
	}

	// The engine, in one process and in three.
	var sidecars []*engineSidecar
	defer func() {
		for _, s := range sidecars {
			s.stop()
		}
	}()
	for _, n := range []int{1, 3} {
		for len(sidecars) < n {
			sc, err := b.stack.startEngineSidecar(ctx, len(sidecars))
			if err != nil {
				return fmt.Errorf("engine sidecar: %w", err)
			}
			sidecars = append(sidecars, sc)
		}
		deal := fmt.Sprintf("s1-engine%d-%s", n, b.cfg.Stamp)
		m, st, err := b.engineRun(ctx, sidecars[:n], deal, b.cfg.S1Conc, dur)
		if err != nil {
			return err
		}
		key := fmt.Sprintf("S1.engine%d", n)
		conflictsPerOK := 0.0
		if st.Reserved > 0 {
			conflictsPerOK = float64(st.Conflicts) / float64(st.Reserved)
		}
		opsPerCAS := 0.0
		if st.Writes > 0 {
			opsPerCAS = float64(st.Reserved) / float64(st.Writes)
		}
		b.report.addMeasurement(scen, fmt.Sprintf("engine over daprd, %d process(es)", n), key, m,
			fmt.Sprintf("%d goroutines in all; %.3f ETag conflicts per success, %.1f reservations per CAS write", b.cfg.S1Conc, conflictsPerOK, opsPerCAS))
		b.report.set(key+".okps", m.OKPerSec)
		b.report.set(key+".conflicts_per_ok", conflictsPerOK)
		b.report.set(key+".ops_per_cas", opsPerCAS)
		b.report.extra(key, st)
		b.logf("  %-28s c=%-4d %s conflicts/ok=%.3f ops/CAS=%.1f", fmt.Sprintf("engine x%d", n), b.cfg.S1Conc, oneLine(m.Summary), conflictsPerOK, opsPerCAS)
		b.report.Checks = append(b.report.Checks, b.checkReserved(ctx, scen, deal, st.Reserved, st.Errors)...)
	}

	// Through the inventory app's HTTP API and its sidecar.
	return b.s1HTTP(ctx, scen)
}

const luaStock = 1_000_000_000

// luaRun is baseline (a): conc goroutines each running the stock script (EVALSHA) against one
// key until dur passes.
func (b *bench) luaRun(ctx context.Context, conc int, dur time.Duration) (Measurement, int64, int64, error) {
	rdb := redis.NewClient(&redis.Options{Addr: b.stack.Infra.RedisAddr, DB: b.stack.Infra.RedisDB, PoolSize: conc})
	defer rdb.Close()
	deal := "lua-" + b.cfg.Stamp
	if err := rdb.Set(ctx, baseline.StockKey(deal), luaStock, 0).Err(); err != nil {
		return Measurement{}, 0, 0, err
	}
	script := baseline.TakeScript()
	if err := script.Load(ctx, rdb).Err(); err != nil {
		return Measurement{}, 0, 0, err
	}
	self := os.Getpid()
	m := meter{procs: func() []proc {
		return append([]proc{{Name: "bench (load + go-redis)", PID: self}}, b.stack.RedisProcs()...)
	}}
	var ok atomic.Int64
	meas := m.measure(ctx, func() Summary {
		return closedLoop("(a) lua", conc, dur, func(ctx context.Context) string {
			n, err := script.Run(ctx, rdb, []string{baseline.StockKey(deal)}, 1).Int64()
			switch {
			case err != nil:
				return "error: " + shortError(err.Error())
			case n < 0:
				return "sold out"
			}
			ok.Add(1)
			return ""
		})
	})
	left, err := rdb.Get(ctx, baseline.StockKey(deal)).Int64()
	return meas, ok.Load(), left, err
}

// closedLoop runs op from conc goroutines for dur and summarizes the answers.
func closedLoop(name string, conc int, dur time.Duration, op func(context.Context) string) Summary {
	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var mu sync.Mutex
	var lat []time.Duration
	s := Summary{Target: name, Mode: "closed", Concurrency: conc, Errors: map[string]int{}}
	start := time.Now()
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			errs := map[string]int{}
			ok := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				label := op(context.Background())
				mine = append(mine, time.Since(t0))
				if label == "" {
					ok++
				} else {
					errs[label]++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			s.OK += ok
			for k, v := range errs {
				s.Errors[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	s.Seconds = time.Since(start).Seconds()
	s.Requests = len(lat)
	slices.Sort(lat)
	q := func(f float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return ms(lat[min(int(f*float64(len(lat))), len(lat)-1)])
	}
	s.P50MS, s.P95MS, s.P99MS = q(0.50), q(0.95), q(0.99)
	s.OKPerSec = float64(s.OK) / s.Seconds
	s.SentRate = float64(s.Requests) / s.Seconds
	if s.Requests > 0 {
		s.ErrorRate = float64(s.Requests-s.OK) / float64(s.Requests)
	}
	return s
}

// engineResult is stockbench's output line.
type engineResult struct {
	Reserved     int64    `json:"reserved"`
	SoldOut      int64    `json:"sold_out"`
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples"`
	ElapsedS     float64  `json:"elapsed_s"`
	P50MS        float64  `json:"p50_ms"`
	P95MS        float64  `json:"p95_ms"`
	P99MS        float64  `json:"p99_ms"`
	Reads        int64    `json:"reads"`
	Writes       int64    `json:"writes"`
	Conflicts    int64    `json:"conflicts"`
}

// engineRun runs one stockbench process per sidecar on one deal, conc goroutines split over
// them, started together; the cost counts the engine processes, their sidecars and Redis.
func (b *bench) engineRun(ctx context.Context, sidecars []*engineSidecar, deal string, conc int, dur time.Duration) (Measurement, engineResult, error) {
	type engineProc struct {
		cmd   *exec.Cmd
		stdin io.WriteCloser
		out   *bufio.Reader
	}
	var procs []engineProc
	defer func() {
		for _, p := range procs {
			_ = p.stdin.Close()
			_ = p.cmd.Wait()
		}
	}()
	for i, sc := range sidecars {
		share := conc / len(sidecars)
		if i < conc%len(sidecars) {
			share++
		}
		cmd := exec.CommandContext(ctx, filepath.Join(b.cfg.BinDir, "stockbench"), "-deal", deal, "-stock", "1000000",
			"-concurrency", fmt.Sprint(share), "-duration", dur.String(), "-node", fmt.Sprint(i), "-handshake")
		if dir := os.Getenv("BENCH_S1_CPUPROFILE"); dir != "" {
			// A CPU profile of each engine process (go tool pprof bin/stockbench <file>).
			cmd.Args = append(cmd.Args, "-cpuprofile", filepath.Join(dir, fmt.Sprintf("stockbench-%d-of-%d.pprof", i, len(sidecars))))
		}
		cmd.Env = append(os.Environ(), fmt.Sprintf("DAPR_GRPC_PORT=%d", sc.app.DaprGRPCPort), fmt.Sprintf("DAPR_HTTP_PORT=%d", sc.app.DaprHTTPPort),
			"DAPR_API_TOKEN="+b.stack.DaprToken())
		cmd.Stderr = b.stack.logFile(fmt.Sprintf("stockbench-%d", i))
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return Measurement{}, engineResult{}, err
		}
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			return Measurement{}, engineResult{}, err
		}
		if err := cmd.Start(); err != nil {
			return Measurement{}, engineResult{}, err
		}
		procs = append(procs, engineProc{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)})
	}
	for i, p := range procs {
		if _, err := protocolLine(p.out, func(l string) bool { return l == "ready" }); err != nil {
			return Measurement{}, engineResult{}, fmt.Errorf("stockbench %d did not get ready (%v; log %s)", i, err,
				filepath.Join(b.stack.LogDir, fmt.Sprintf("stockbench-%d.log", i)))
		}
	}
	m := meter{procs: func() []proc {
		var ps []proc
		for i, p := range procs {
			ps = append(ps, proc{Name: fmt.Sprintf("stockbench-%d", i), PID: p.cmd.Process.Pid},
				proc{Name: fmt.Sprintf("engine-%d-daprd", i), PID: sidecars[i].pid()})
		}
		return append(ps, b.stack.RedisProcs()...)
	}}
	var total engineResult
	var runErr error
	meas := m.measure(ctx, func() Summary {
		for _, p := range procs {
			if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
				runErr = err
				return Summary{}
			}
		}
		s := Summary{Target: "engine", Mode: "closed", Concurrency: conc, Errors: map[string]int{}}
		for i, p := range procs {
			line, err := protocolLine(p.out, func(l string) bool { return strings.HasPrefix(l, "{") })
			var r engineResult
			if err == nil {
				err = json.Unmarshal([]byte(line), &r)
			}
			if err != nil {
				runErr = errors.Join(runErr, fmt.Errorf("stockbench %d: %w", i, err))
				continue
			}
			total.Reserved += r.Reserved
			total.SoldOut += r.SoldOut
			total.Errors += r.Errors
			total.Reads += r.Reads
			total.Writes += r.Writes
			total.Conflicts += r.Conflicts
			total.ErrorSamples = append(total.ErrorSamples, r.ErrorSamples...)
			total.ElapsedS = max(total.ElapsedS, r.ElapsedS)
			// Quantiles of several processes cannot be merged; the slowest process's stand.
			s.P50MS, s.P95MS, s.P99MS = max(s.P50MS, r.P50MS), max(s.P95MS, r.P95MS), max(s.P99MS, r.P99MS)
		}
		s.OK = int(total.Reserved)
		s.Requests = int(total.Reserved + total.SoldOut + total.Errors)
		s.Seconds = total.ElapsedS
		if s.Seconds > 0 {
			s.OKPerSec = float64(s.OK) / s.Seconds
			s.SentRate = float64(s.Requests) / s.Seconds
		}
		if total.SoldOut > 0 {
			s.Errors["sold out"] = int(total.SoldOut)
		}
		if total.Errors > 0 {
			s.Errors["error"] = int(total.Errors)
		}
		if s.Requests > 0 {
			s.ErrorRate = float64(s.Requests-s.OK) / float64(s.Requests)
		}
		return s
	})
	return meas, total, runErr
}

// protocolLine reads stdout lines until one satisfies want (the Dapr SDK prints a line of its
// own there when it starts).
func protocolLine(r *bufio.Reader, want func(string) bool) (string, error) {
	var skipped []string
	for {
		line, err := r.ReadString('\n')
		line = strings.TrimSpace(line)
		if err == nil && want(line) {
			return line, nil
		}
		if err != nil {
			return "", fmt.Errorf("%w after %q", err, skipped)
		}
		skipped = append(skipped, line)
	}
}

// checkReserved checks an inventory deal that only took reservations: counters intact and
// the units reserved equal to the successes (errors may or may not have reserved).
func (b *bench) checkReserved(ctx context.Context, scen, deal string, ok, unknown int64) []Check {
	name := "deal " + deal
	lv, err := readStock(ctx, b.stack.Redis, deal)
	if err != nil {
		return []Check{fail(scen, name+": stock counters", "%v", err)}
	}
	out := []Check{pass(scen, name+": stock counters", "stock %d = available %d + reserved %d + sold %d, none negative",
		lv.Stock, lv.Available, lv.Reserved, lv.Sold)}
	switch {
	case int64(lv.Reserved) < ok || int64(lv.Reserved) > ok+unknown || lv.Sold != 0:
		out = append(out, fail(scen, name+": reserved == successes", "%d successes, %d units reserved, %d sold (%d errors)", ok, lv.Reserved, lv.Sold, unknown))
	case lv.HoldsListed && lv.ReservedHoldUnits != lv.Reserved:
		out = append(out, fail(scen, name+": reserved == successes", "reserved counter %d, reserved holds %d units", lv.Reserved, lv.ReservedHoldUnits))
	default:
		out = append(out, pass(scen, name+": reserved == successes", "%d units reserved for %d successes", lv.Reserved, ok))
	}
	return out
}

// s1HTTP reserves through inventory's daprd (POST /v1.0/invoke/inventory/method/reservations):
// the engine behind its real HTTP API and sidecar, closed loop at S1's concurrency.
func (b *bench) s1HTTP(ctx context.Context, scen string) error {
	inv := b.stack.App("inventory")
	base := inv.DaprHTTPURL() + "/v1.0/invoke/inventory/method"
	deal := "s1-http-" + b.cfg.Stamp
	hdr := map[string]string{"dapr-api-token": b.stack.DaprToken()}
	if err := newAPI(base).do(ctx, http.MethodPut, "/stock/"+deal, "", hdr, map[string]int{"stock": 1_000_000}, http.StatusOK, nil); err != nil {
		return fmt.Errorf("create stock through inventory: %w", err)
	}
	until := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	var n, ok, unknown atomic.Int64
	t := &loadTarget{
		Name: "S1 inventory HTTP",
		Next: func(t *vegeta.Target) error {
			i := n.Add(1)
			t.Method, t.URL = http.MethodPost, base+"/reservations"
			t.Body = fmt.Appendf(nil, `{"deal_id":%q,"order_id":"h-%d","quantity":1,"until":%q}`, deal, i, until)
			t.Header = http.Header{"Content-Type": {"application/json"}, "Dapr-Api-Token": {b.stack.DaprToken()}}
			return nil
		},
		Classify: func(code int, body []byte) string {
			var r struct {
				Outcome string `json:"outcome"`
			}
			if code == http.StatusOK && json.Unmarshal(body, &r) == nil && r.Outcome == "reserved" {
				return ""
			}
			if code == http.StatusOK {
				return "200 " + r.Outcome
			}
			return expect("", http.StatusOK)(code, body)
		},
		OnResult: func(r *vegeta.Result, label string) {
			switch {
			case label == "":
				ok.Add(1)
			case unknownOutcome(r):
				unknown.Add(1)
			}
		},
	}
	m := meter{
		procs:    func() []proc { return append(b.stack.AppProcs("inventory"), b.stack.RedisProcs()...) },
		appURLs:  map[string]string{"inventory": b.stack.AdminURL("inventory") + "/metrics"},
		sideURLs: map[string]string{"inventory": b.stack.SidecarMetricsURL("inventory")},
	}
	meas := m.measure(ctx, func() Summary { return attack(ctx, t, b.cfg.S1Conc, 0, b.cfg.Duration) })
	st := meas.Apps["inventory"]
	note := fmt.Sprintf("%d clients", b.cfg.S1Conc)
	if c := st.BatchMeans["inventory_batch_size"]; c > 0 {
		note += fmt.Sprintf("; mean batch %.1f ops", c)
	}
	var conflicts float64
	for _, v := range st.Conflicts {
		conflicts += v
	}
	if meas.OK > 0 {
		note += fmt.Sprintf("; %.3f ETag conflicts per success", conflicts/float64(meas.OK))
	}
	b.report.addMeasurement(scen, "inventory HTTP API + sidecar", "S1.http", meas, note)
	b.report.set("S1.http.okps", meas.OKPerSec)
	b.logf("  %-28s c=%-4d %s", "inventory http", b.cfg.S1Conc, oneLine(meas.Summary))
	b.report.Checks = append(b.report.Checks, b.checkReserved(ctx, scen, deal, ok.Load(), unknown.Load())...)
	return nil
}
