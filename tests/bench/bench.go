package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/groupbuy/groupbuy/pkg/devstack"
	"github.com/groupbuy/groupbuy/tests/bench/baseline"
)

// bench is one run of the harness.
type bench struct {
	cfg     Config
	out     io.Writer // the table
	log     io.Writer // progress
	started time.Time

	stack   *Stack
	api     *api
	seed    *seeder
	users   []User
	ledger  *ledger
	secrets map[string]string

	baseline    *child
	baselineURL string

	report  Report
	seq     atomic.Int64 // idempotency keys
	current string       // the scenario running
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.log, "%6.1fs "+format+"\n", append([]any{time.Since(b.started).Seconds()}, args...)...)
}

func (b *bench) run(ctx context.Context) (err error) {
	b.ledger = newLedger()
	b.report = Report{Stamp: b.cfg.Stamp, Config: reportConfig(b.cfg), Host: hostInfo(ctx, b.cfg.RepoRoot)}
	if b.secrets, err = devSecrets(b.cfg.RepoRoot); err != nil {
		return err
	}
	for _, bin := range []string{"gateway", "order", "stockbench"} {
		if _, err := os.Stat(filepath.Join(b.cfg.BinDir, bin)); err != nil {
			return fmt.Errorf("%s not built in %s (go build -o bin/ ./apps/..., or run through go tool task bench): %w", bin, b.cfg.BinDir, err)
		}
	}
	b.logf("starting the stack (port offset %d, logs in %s)", b.cfg.PortOffset, filepath.Join(b.cfg.OutDir, "logs"))
	if b.stack, err = startStack(ctx, b.cfg, b.logf); err != nil {
		return err
	}
	defer func() {
		if b.cfg.KeepRunning && ctx.Err() == nil {
			b.logf("stack left running (gateway %s); Ctrl-C ends it", b.stack.GatewayURL())
			<-ctx.Done()
		}
		if b.baseline != nil {
			b.baseline.stop()
		}
		if serr := b.stack.Stop(); serr != nil {
			b.logf("stop stack: %v", serr)
		}
	}()
	b.logf("stack up: gateway %s, redis db %d, vhost of run %s", b.stack.GatewayURL(), b.stack.Infra.RedisDB, b.stack.Infra.RunID)
	b.api = newAPI(b.stack.GatewayURL())
	if err := b.seedBase(ctx); err != nil {
		return err
	}
	if err := b.startBaseline(ctx); err != nil {
		return err
	}
	b.report.Processes = procNames(b.stack.Procs())

	steps := map[string]func(context.Context) error{
		"S1": b.scenarioS1, "S2": b.scenarioS2, "S2-long": b.scenarioS2Long, "S3": b.scenarioS3,
		"R": b.scenarioR, "S4": b.scenarioS4, "S5": b.scenarioS5, "S6": b.scenarioS6,
	}
	var failed []string
	for _, name := range b.cfg.Scenarios {
		if ctx.Err() != nil {
			break
		}
		b.logf("== %s", name)
		b.current = name
		t0 := time.Now()
		before := len(b.report.Checks)
		if err := steps[name](ctx); err != nil {
			b.report.Checks = append(b.report.Checks, fail(name, "scenario ran", "%v", err))
			b.logf("%s failed to run: %v", name, err)
		}
		if err := b.stack.Dead(); err != nil {
			// A process died under load: a finding in itself (the run fails), but the other
			// scenarios can still measure a stack whose dead app is started again.
			b.report.Checks = append(b.report.Checks, fail(name, "every process of the stack still running", "%v", err))
			b.logf("%s: %v", name, err)
			if rerr := b.restartDead(ctx); rerr != nil {
				b.logf("the stack cannot be repaired, skipping the remaining scenarios: %v", rerr)
				failed = append(failed, name+": a process of the stack died")
				b.report.Durations = append(b.report.Durations, ScenarioTime{Name: name, Seconds: time.Since(t0).Seconds()})
				break
			}
		}
		for _, c := range b.report.Checks[before:] {
			if !c.OK {
				failed = append(failed, name+": "+c.Name)
			}
			b.logf("  invariant %-4s %s: %s", okWord(c.OK), c.Name, c.Detail)
		}
		b.report.Durations = append(b.report.Durations, ScenarioTime{Name: name, Seconds: time.Since(t0).Seconds()})
	}
	b.logf("sizes: scanning redis db %d", b.stack.Infra.RedisDB)
	if sizes, err := scanSizes(ctx, b.stack.Redis); err == nil {
		b.report.Sizes = sizes
	} else {
		b.logf("size scan: %v", err)
	}
	b.report.Ratios = ratios(&b.report)
	b.report.TotalSeconds = time.Since(b.started).Seconds()
	files, werr := b.report.write(b.cfg)
	printReport(b.out, &b.report, files)
	if werr != nil {
		return werr
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if len(failed) > 0 {
		return fmt.Errorf("invariants violated: %s", strings.Join(failed, "; "))
	}
	return nil
}

// restartDead starts every app whose process or sidecar died again (both, on their ports) and
// waits until it is reachable through the sidecars.
func (b *bench) restartDead(ctx context.Context) error {
	apps := map[string]bool{}
	for _, p := range b.stack.Sup.Processes() {
		if p.Running {
			continue
		}
		id := strings.TrimSuffix(p.Name, "-daprd")
		if _, ok := b.stack.Plan.App(id); !ok {
			return fmt.Errorf("%s is not an app: cannot restart it alone", p.Name)
		}
		apps[id] = true
	}
	for id := range apps {
		b.logf("  restarting %s and its sidecar", id)
		_ = b.stack.Sup.StopApp(id) // the half that still runs
		if err := b.stack.Sup.StartApp(ctx, id); err != nil {
			return err
		}
		if err := b.waitInvocable(ctx, id, time.Minute); err != nil {
			return err
		}
	}
	return nil
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "FAIL"
}

// seedBase logs the admin in and registers the users.
func (b *bench) seedBase(ctx context.Context) error {
	tok, err := b.api.login(ctx, "admin", b.secrets["admin-password-admin"])
	if err != nil {
		return fmt.Errorf("admin login: %w", err)
	}
	b.seed = &seeder{api: b.api, admin: tok}
	return b.ensureUsers(ctx, b.cfg.Users)
}

// ensureUsers registers users until there are n.
func (b *bench) ensureUsers(ctx context.Context, n int) error {
	if len(b.users) >= n {
		return nil
	}
	t0 := time.Now()
	more, err := b.api.registerUsers(ctx, n-len(b.users), 32, "bench")
	if err != nil {
		return fmt.Errorf("register users: %w", err)
	}
	b.users = append(b.users, more...)
	b.logf("users: %d registered in %.1fs (%d in all)", len(more), time.Since(t0).Seconds(), len(b.users))
	return nil
}

// startBaseline runs the seed-style server (this binary, serve-baseline) on a free port,
// against the run's Redis DB and vhost, accepting the gateway's tokens.
func (b *bench) startBaseline(ctx context.Context) error {
	port, err := devstack.FreePorts()("baseline", devstack.PortApp, 0)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	inf := b.stack.Infra
	args := []string{"serve-baseline", "-listen", addr, "-redis-addr", inf.RedisAddr, "-redis-db", strconv.Itoa(inf.RedisDB),
		"-amqp-url", inf.RabbitURL, "-jwt-key", b.secrets["jwt-signing-key"]}
	c, err := startChild("baseline", self, args, nil, b.cfg.OutDir, b.stack.logFile("baseline"))
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, "http://"+addr+"/healthz", http.StatusOK, c, 30*time.Second); err != nil {
		c.stop()
		return err
	}
	b.baseline, b.baselineURL = c, "http://"+addr+"/api/v1"
	return nil
}

// seedBaselineDeal writes a deal and its stock the way the baseline reads them.
func (b *bench) seedBaselineDeal(ctx context.Context, id string, stock int) error {
	data, err := json.Marshal(baseline.Deal{ID: id, ProductID: "p-" + id, Kind: "flash", PriceCents: 999, Stock: stock})
	if err != nil {
		return err
	}
	pipe := b.stack.Redis.TxPipeline()
	pipe.Set(ctx, baseline.DealKey(id), data, 0)
	pipe.Set(ctx, baseline.StockKey(id), stock, 0)
	_, err = pipe.Exec(ctx)
	return err
}

// platformMeter counts every process of the stack (and Redis and RabbitMQ) and scrapes every
// app's and sidecar's metrics.
func (b *bench) platformMeter() meter {
	m := meter{procs: b.stack.Procs, appURLs: map[string]string{}, sideURLs: map[string]string{}}
	for _, id := range b.stack.AppIDs() {
		m.appURLs[id] = b.stack.AdminURL(id) + "/metrics"
		m.sideURLs[id] = b.stack.SidecarMetricsURL(id)
	}
	return m
}

// baselineMeter counts the baseline server, Redis and RabbitMQ.
func (b *bench) baselineMeter() meter {
	return meter{procs: func() []proc {
		return append([]proc{{Name: "baseline", PID: b.baseline.pid()}}, b.stack.InfraProcs()...)
	}}
}

func (b *bench) opts(full bool) profileOpts {
	o := profileOpts{Conc: b.cfg.Conc, Duration: b.cfg.Duration, Step: b.cfg.Step, SLO: b.cfg.SLO, Smoke: b.cfg.Smoke && full,
		Alive: b.stack.Dead}
	if full && !b.cfg.Smoke {
		o.Sweep = []int{1, 16, 256}
		o.Search = true
	}
	return o
}

func (b *bench) key(scen string) string {
	return fmt.Sprintf("bench-%s-%s-%d", b.cfg.Stamp, scen, b.seq.Add(1))
}

// purchases generates flash purchases of 1 unit through base (the gateway or the baseline):
// the i-th goes to user i mod U, and a user's 100th purchase of a deal moves the next round to
// the next deal (the catalog caps per_user_limit at 100). With limit false every purchase goes
// to the first deal whatever the count (a sold-out deal takes no units). Each request is a
// pure function of i, which its URL carries (withSeq), so an open outcome can be replayed.
type purchases struct {
	base   string
	users  []User
	deals  []string
	limit  bool
	prefix string
	n      atomic.Int64
}

var errBudget = errors.New("the seeded users' purchase budget on the deals is used up")

func (p *purchases) next(t *vegeta.Target) error { return p.build(p.n.Add(1)-1, t) }

func (p *purchases) build(i int64, t *vegeta.Target) error {
	u := p.users[int(i)%len(p.users)]
	d := 0
	if p.limit {
		d = int(i) / len(p.users) / maxPerUser
		if d >= len(p.deals) {
			return errBudget
		}
	}
	t.Method = http.MethodPost
	t.URL = withSeq(p.base+"/deals/"+p.deals[d]+"/orders", i)
	t.Body = []byte(`{"quantity":1}`)
	t.Header = http.Header{
		"Authorization":   {"Bearer " + u.Token},
		"Idempotency-Key": {p.prefix + strconv.FormatInt(i, 10)},
		"Content-Type":    {"application/json"},
	}
	return nil
}

// dealOfURL returns the deal id of a purchase URL.
func dealOfURL(u string) string {
	_, rest, _ := strings.Cut(u, "/deals/")
	id, _, _ := strings.Cut(rest, "/")
	id, _, _ = strings.Cut(id, "?")
	return id
}

// orderAnswer is the part of a 201 order the bench records.
type orderAnswer struct {
	ID       string    `json:"id"`
	UserID   string    `json:"user_id"`
	DealID   string    `json:"deal_id"`
	GroupID  string    `json:"group_id"`
	Quantity int       `json:"quantity"`
	PayBy    time.Time `json:"pay_by"`
}

// addOrderAnswer records a 201 order answer in the ledger.
func (b *bench) addOrderAnswer(body []byte, at time.Time) {
	var o orderAnswer
	if err := json.Unmarshal(body, &o); err == nil && o.ID != "" {
		b.ledger.add(placedOrder{ID: o.ID, UserID: o.UserID, DealID: o.DealID, Qty: o.Quantity, PayBy: o.PayBy, At: at})
	}
}

// orderRecorder is an OnResult that puts 201 answers in the ledger and keeps the requests
// whose outcome is open (openOutcome) to be replayed with their Idempotency-Key before the
// checks, as a client would retry them; build rebuilds a request from its sequence number.
// Without replay (the baseline has no idempotency keys: a replay would buy again) an open
// outcome only widens the checks' tolerance.
func (b *bench) orderRecorder(build func(int64, *vegeta.Target) error, replay bool) func(*vegeta.Result, string) {
	return func(r *vegeta.Result, label string) {
		if label == "" && r.Code == http.StatusCreated {
			b.addOrderAnswer(r.Body, r.End())
			return
		}
		if !openOutcome(r) {
			return
		}
		deal := dealOfURL(r.URL)
		var t vegeta.Target
		if i, ok := seqOf(r.URL); ok && replay && build(i, &t) == nil {
			b.ledger.addOpen(openRequest{Deal: deal, Target: t, Created: b.addOrderAnswer})
			return
		}
		b.ledger.addUnknown(deal, 1)
	}
}

// resolveOpen replays every request whose outcome was left open, with the same
// Idempotency-Key and user, until it gets a definite answer (a 201, replayed or new, is
// recorded; any other 4xx means nothing was taken) or ten tries passed; the ones still open
// widen the checks' tolerance.
func (b *bench) resolveOpen(ctx context.Context) {
	reqs := b.ledger.takeOpen()
	if len(reqs) == 0 {
		return
	}
	// A minute in all: a stack that cannot answer a replay by then is broken, and the
	// requests left open only widen the checks' tolerance.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	hc := &http.Client{Timeout: 15 * time.Second}
	var created, refused, open atomic.Int64
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for _, o := range reqs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for try := range 8 {
				if try > 0 {
					select {
					case <-time.After(time.Duration(try) * 250 * time.Millisecond):
					case <-ctx.Done():
					}
				}
				if ctx.Err() != nil {
					break
				}
				req, err := o.Target.Request()
				if err != nil {
					break
				}
				resp, err := hc.Do(req.WithContext(ctx))
				if err != nil {
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				r := &vegeta.Result{Code: uint16(resp.StatusCode), Body: body}
				switch {
				case resp.StatusCode == http.StatusCreated:
					o.Created(body, time.Now())
					created.Add(1)
					return
				case !openOutcome(r):
					refused.Add(1)
					return
				}
			}
			open.Add(1)
			b.ledger.addUnknown(o.Deal, 1)
		})
	}
	wg.Wait()
	b.logf("  replayed %d requests whose outcome was open (no answer, 5xx, idempotency-key-in-use) with their Idempotency-Key: %d created, %d refused, %d still open",
		len(reqs), created.Load(), refused.Load(), open.Load())
	b.report.extra(fmt.Sprintf("replays.%s.%d", b.current, b.seq.Add(1)), map[string]int64{"replayed": int64(len(reqs)), "created": created.Load(), "refused": refused.Load(), "open": open.Load()})
}

// placeOrders buys n units of a deal through the gateway at the reference concurrency
// (scenario setup, not measured) and returns the deal's orders.
func (b *bench) placeOrders(ctx context.Context, dealID string, n int, scen string) ([]placedOrder, error) {
	if err := b.ensureUsers(ctx, (n+maxPerUser-1)/maxPerUser); err != nil {
		return nil, err
	}
	var issued atomic.Int64
	p := &purchases{base: b.stack.GatewayURL(), users: b.users, deals: []string{dealID}, limit: true, prefix: b.key(scen) + "-"}
	t := &loadTarget{
		Name: scen + " setup",
		Next: func(t *vegeta.Target) error {
			i := issued.Add(1) - 1
			if i >= int64(n) {
				return errDone
			}
			return p.build(i, t)
		},
		Classify: expect("", http.StatusCreated),
		OnResult: b.orderRecorder(p.build, true),
	}
	s := attack(ctx, t, b.cfg.Conc, 0, 30*time.Minute)
	b.resolveOpen(ctx)
	orders, units, _, _ := b.ledger.deal(dealID)
	b.logf("  %s: placed %d orders: %s", scen, len(orders), oneLine(s))
	if units < n {
		return nil, fmt.Errorf("%s setup: %d of %d orders placed (%v)", scen, units, n, s.Errors)
	}
	return orders, nil
}

var errDone = errors.New("done")

func procNames(ps []proc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, fmt.Sprintf("%s(%d)", p.Name, p.PID))
	}
	return out
}
