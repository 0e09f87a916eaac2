// Command bench is the benchmark harness of docs/BENCHMARKS.md (`go tool task bench`): it
// brings up the stack the way `go tool task run` does, on ports of its own, seeds users and
// deals, runs the scenarios with same-run baselines, checks the stores' invariants after each
// one, and prints one table, writing bench-results/<timestamp>.json and SVG plots.
//
//	go tool task bench                                  # every scenario (about 15 minutes)
//	go tool task bench -- --scenario S2 --duration 20s  # one scenario
//	go tool task bench -- --smoke                       # every scenario for a few seconds (CI)
//
// Load comes from vegeta (open-loop attacks at fixed rates, and closed-loop attacks at a fixed
// concurrency for the sweep). A violated invariant fails the run whatever the speed; a missed
// speed target never does.
//
// `bench serve-baseline [flags]` runs the seed-style baseline server (tests/bench/baseline);
// the harness starts it that way as a child process.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/groupbuy/groupbuy/tests/bench/baseline"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if len(os.Args) > 1 && os.Args[1] == "serve-baseline" {
		err = baseline.Serve(ctx, os.Args[2:])
	} else {
		err = run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Scenario names, in the order they run.
var allScenarios = []string{"S1", "S2", "S2-long", "S3", "R", "S4", "S5", "S6"}

// Config is what the command line asks for.
type Config struct {
	Scenarios   []string
	Smoke       bool
	Duration    time.Duration // main phase of each target
	Step        time.Duration // each sweep level and rate step
	Conc        int           // reference concurrency (the numbers are at 64)
	S1Conc      int           // goroutines of the S1 engine and Lua runs
	SLO         time.Duration
	GroupSLO    time.Duration
	Users       int
	LongUnits   int
	LongMax     time.Duration
	Groups      int
	DLGroups    int
	DLTTL       time.Duration
	S5Rate      int
	S6Orders    int
	ROrders     int
	S6Window    time.Duration
	S6Wait      time.Duration
	ExpiryTick  string
	PortOffset  int
	OutDir      string // logs and run files of this run
	ResultsDir  string
	BinDir      string
	RepoRoot    string
	Stamp       string
	KeepRunning bool
}

func parseConfig(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	scen := fs.String("scenario", "all", "comma-separated scenarios: "+strings.Join(allScenarios, ",")+" (or all)")
	fs.BoolVar(&c.Smoke, "smoke", false, "run each scenario for a few seconds at small scale (CI: checks that it runs and the invariants hold)")
	fs.DurationVar(&c.Duration, "duration", 10*time.Second, "main (reference-concurrency) phase of each target")
	fs.DurationVar(&c.Step, "step", 0, "each concurrency-sweep level and open-loop rate step (default duration/3, at least 2s)")
	fs.IntVar(&c.Conc, "concurrency", 64, "reference concurrency of the closed-loop main phases")
	fs.IntVar(&c.S1Conc, "s1-concurrency", 256, "goroutines of S1 (engine and per-request Lua), split over the engine processes")
	fs.DurationVar(&c.SLO, "slo", 120*time.Millisecond, "p95 objective of the sustainable rate")
	fs.DurationVar(&c.GroupSLO, "group-slo", 150*time.Millisecond, "p95 objective of S4 joins (issue 11)")
	fs.IntVar(&c.Users, "users", 1000, "seeded users (more are added when a scenario needs them: a user buys at most 100 units of a deal)")
	fs.IntVar(&c.LongUnits, "units", 20_000, "S2-long: units on the deal, sold out at the reference concurrency (the issue's 200,000 takes ~40 min at today's ~90 orders/s)")
	fs.DurationVar(&c.LongMax, "long-max", 120*time.Second, "S2-long: stop selling after this long; the slices then cover the units sold")
	fs.IntVar(&c.Groups, "groups", 1000, "S4: open groups the joins spread over")
	fs.IntVar(&c.DLGroups, "deadline-groups", 1000, "S4: open groups whose deadlines pass (issue 11 asks for 10,000)")
	fs.DurationVar(&c.DLTTL, "deadline-ttl", 45*time.Second, "S4: group_ttl of the deadline groups (at least 5s)")
	fs.IntVar(&c.S5Rate, "s5-rate", 500, "S5: payments per second")
	fs.IntVar(&c.ROrders, "r-orders", 2000, "R: orders bought on the deal whose reads are measured (reads must not slow with the orders on a deal)")
	fs.IntVar(&c.S6Orders, "s6-orders", 2000, "S6: unpaid orders left to expire (issue 10 asks for 10,000)")
	fs.DurationVar(&c.S6Window, "s6-window", 30*time.Second, "S6: pay window of the order app (restarted with it)")
	fs.DurationVar(&c.S6Wait, "s6-wait", 90*time.Second, "S6: how long after the last pay_by to wait for every release")
	fs.StringVar(&c.ExpiryTick, "expiry-tick", "", "order-expiry cron interval, e.g. 1s (default: components/order-expiry.yaml's)")
	// 12000 moves every port of dapr/dapr.yaml (3500..50206) outside Linux's default ephemeral
	// range (32768-60999), where a busy machine's outgoing connections would take them.
	fs.IntVar(&c.PortOffset, "port-offset", 12000, "add N to every port of the stack (as go tool task run -- --port-offset)")
	fs.StringVar(&c.ResultsDir, "out", "bench-results", "directory for <timestamp>.json, plots and logs")
	fs.StringVar(&c.BinDir, "bin", "bin", "directory holding the app binaries and stockbench (go build -o bin/ ./apps/...)")
	fs.BoolVar(&c.KeepRunning, "keep-running", false, "leave the stack up after the run until Ctrl-C (to poke at it)")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *scen == "all" || *scen == "" {
		c.Scenarios = slices.Clone(allScenarios)
	} else {
		for _, s := range strings.Split(*scen, ",") {
			s = strings.TrimSpace(s)
			i := slices.IndexFunc(allScenarios, func(x string) bool { return strings.EqualFold(x, s) })
			if i < 0 {
				return Config{}, fmt.Errorf("--scenario %q: want one of %s", s, strings.Join(allScenarios, ", "))
			}
			if !slices.Contains(c.Scenarios, allScenarios[i]) {
				c.Scenarios = append(c.Scenarios, allScenarios[i])
			}
		}
		// Always in the canonical order: S6 restarts the order app with a short pay window.
		slices.SortFunc(c.Scenarios, func(a, b string) int {
			return slices.Index(allScenarios, a) - slices.Index(allScenarios, b)
		})
	}
	if c.Smoke {
		c.Duration, c.Step = 3*time.Second, 2*time.Second
		c.Users, c.LongUnits, c.Groups, c.DLGroups = 40, 300, 20, 20
		c.DLTTL, c.S5Rate, c.S6Orders, c.S6Window, c.S6Wait = 8*time.Second, 10, 40, 6*time.Second, 90*time.Second
		c.LongMax, c.ROrders = 40*time.Second, 50
		if c.ExpiryTick == "" {
			c.ExpiryTick = "1s"
		}
	}
	if c.Step <= 0 {
		c.Step = max(c.Duration/3, 2*time.Second)
	}
	if c.DLTTL < 5*time.Second {
		return Config{}, errors.New("--deadline-ttl must be at least 5s (the catalog's minimum group_ttl)")
	}
	if c.ROrders < 0 {
		return Config{}, errors.New("--r-orders must not be negative")
	}
	if c.Conc < 1 || c.S1Conc < 3 {
		return Config{}, errors.New("--concurrency must be at least 1 and --s1-concurrency at least 3")
	}
	return c, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.RepoRoot, err = repoRoot(); err != nil {
		return err
	}
	cfg.Stamp = time.Now().UTC().Format("20060102T150405Z")
	if !filepath.IsAbs(cfg.ResultsDir) {
		cfg.ResultsDir = filepath.Join(cfg.RepoRoot, cfg.ResultsDir)
	}
	if !filepath.IsAbs(cfg.BinDir) {
		cfg.BinDir = filepath.Join(cfg.RepoRoot, cfg.BinDir)
	}
	cfg.OutDir = filepath.Join(cfg.ResultsDir, cfg.Stamp)
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return err
	}
	b := &bench{cfg: cfg, out: stdout, log: stderr, started: time.Now()}
	return b.run(ctx)
}

// repoRoot is the nearest directory above the working directory holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod above %s: run the bench from the repository", dir)
		}
	}
}
