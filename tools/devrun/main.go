// Command devrun starts the groupbuy apps locally, each with its Dapr sidecar, plus placement
// and scheduler, all on 127.0.0.1, and keeps them in the foreground until Ctrl-C.
//
//	go run ./tools/devrun [-f dapr/dapr.yaml] [--port-offset N] [--out .run] [--cli auto|always|never]
//
// It materializes the run file into --out (effective resources, config and run file; see
// pkg/devstack), checks that Redis and RabbitMQ answer (starting a local one when its server
// is installed, unless --start-infra=false), then runs the stack: through the real
// `dapr run -f <out>/dapr.yaml` when the Dapr CLI is on PATH (--cli auto, or always), else
// with its own supervisor. It exits non-zero when a process dies.
//
// Environment: GROUPBUY_REDIS_ADDR (host:port) and GROUPBUY_RABBITMQ_URL (amqp://...) point
// the components, and REDIS_ADDR of the apps, at other servers; OTEL_EXPORTER_OTLP_ENDPOINT
// makes the sidecars export traces there; DAPR_BIN_DIR overrides ~/.dapr/bin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/groupbuy/groupbuy/pkg/devstack"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, let a second one end the launcher at once (the children
		// then die with it through Pdeathsig).
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "devrun:", err)
		os.Exit(1)
	}
}

// config is what the command line and environment ask for.
type config struct {
	runFile      string
	portOffset   int
	outDir       string
	cli          string
	apps         []string
	startInfra   bool
	readyTimeout time.Duration
	otlp         string
	profile      string
	redisAddr    string
	rabbitURL    string
}

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("devrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.runFile, "f", "dapr/dapr.yaml", "Dapr multi-app run file")
	fs.IntVar(&c.portOffset, "port-offset", 0, "add N to every port (apps, sidecars, control plane), to run a second stack")
	fs.StringVar(&c.outDir, "out", ".run", "directory for the effective run file, resources and config")
	fs.StringVar(&c.cli, "cli", "auto", "use the Dapr CLI (`dapr run -f`): auto (when on PATH), always, never")
	apps := fs.String("apps", "", "comma-separated app ids to run (default: all)")
	fs.BoolVar(&c.startInfra, "start-infra", true, "start Redis/RabbitMQ on loopback when unreachable and installed")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", 2*time.Minute, "how long processes may take to become ready")
	fs.StringVar(&c.otlp, "otlp", getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "OTLP/HTTP endpoint for the sidecars' traces")
	fs.StringVar(&c.profile, "profile", getenv("GROUPBUY_PROFILE"), "infrastructure profile: a directory under components/profiles whose resources replace components/ of the same name (e.g. postgres)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	switch c.cli {
	case "auto", "always", "never":
	default:
		return config{}, fmt.Errorf("--cli %q: want auto, always or never", c.cli)
	}
	for _, id := range strings.Split(*apps, ",") {
		if id = strings.TrimSpace(id); id != "" {
			c.apps = append(c.apps, id)
		}
	}
	c.redisAddr = getenv(devstack.EnvRedisAddr)
	c.rabbitURL = getenv(devstack.EnvRabbitMQURL)
	return c, nil
}

func run(ctx context.Context) error {
	cfg, err := parseConfig(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}

	rf, err := devstack.LoadRunFile(cfg.runFile)
	if err != nil {
		return err
	}
	opts := devstack.Options{
		OutDir:       cfg.outDir,
		Apps:         cfg.apps,
		OTLPEndpoint: cfg.otlp,
		Overlay:      profileDir(cfg.runFile, cfg.profile),
	}
	if cfg.portOffset != 0 {
		opts.Ports = devstack.OffsetPorts(cfg.portOffset)
	}
	if opts.ComponentMetadata, opts.AppEnv, err = infraOverrides(rf, cfg); err != nil {
		return err
	}
	plan, err := devstack.NewPlan(rf, opts)
	if err != nil {
		return err
	}
	if err := plan.Write(); err != nil {
		return err
	}

	sup, err := devstack.NewSupervisor(plan, devstack.SupervisorOptions{ReadyTimeout: cfg.readyTimeout})
	if err != nil {
		return err
	}
	// Stop runs on every way out: a failed start, a dead child, Ctrl-C.
	defer func() {
		if err := sup.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "devrun: stop:", err)
		}
	}()
	sup.Logf("effective run file %s", plan.RunFilePath)

	err = start(ctx, sup, cfg)
	if ctx.Err() != nil {
		sup.Logf("interrupted while starting; stopping")
		return nil
	}
	if err != nil {
		return err
	}
	announce(plan)

	err = sup.Wait(ctx)
	if ctx.Err() != nil {
		sup.Logf("stopping")
		return nil
	}
	return err
}

// start brings up dependencies, control plane and apps, through the Dapr CLI or not.
func start(ctx context.Context, sup *devstack.Supervisor, cfg config) error {
	plan := sup.Plan()
	daprCLI := ""
	if cfg.cli != "never" {
		path, err := exec.LookPath("dapr")
		switch {
		case err == nil:
			daprCLI = path
		case cfg.cli == "always":
			return fmt.Errorf("--cli always: the dapr CLI is not on PATH: %w", err)
		}
	}
	if err := sup.EnsureInfra(ctx, cfg.startInfra); err != nil {
		return fmt.Errorf("infrastructure:\n%w", err)
	}
	if daprCLI == "" {
		return sup.Start(ctx)
	}

	// `dapr run -f` starts neither placement nor scheduler (dapr init does, in containers).
	if err := sup.StartControlPlane(ctx); err != nil {
		return err
	}
	sup.Logf("running %s run -f %s", daprCLI, plan.RunFilePath)
	var ready []devstack.ReadyCheck
	for _, a := range plan.Apps {
		ready = append(ready, devstack.SidecarReadyCheck(a))
		if a.AppPort > 0 && len(a.Command) > 0 {
			ready = append(ready, devstack.AppReadyCheck(a))
		}
	}
	// The CLI gets its own process group: Ctrl-C reaches only this launcher, and Stop
	// forwards it to the CLI's group as SIGTERM, which the CLI handles like Ctrl-C. Its
	// daprd and apps inherit the API tokens and DAPR_HOST_IP from its environment.
	return sup.StartProcess(ctx, devstack.ProcessSpec{
		Name:  "dapr",
		Path:  daprCLI,
		Args:  []string{"run", "-f", plan.RunFilePath},
		Dir:   plan.RepoRoot,
		Env:   sup.SidecarEnv(),
		Ready: ready,
	})
}

// infraOverrides turns GROUPBUY_REDIS_ADDR and GROUPBUY_RABBITMQ_URL into metadata overrides
// for every component of the matching type, and into REDIS_ADDR for apps that have it.
func infraOverrides(rf *devstack.RunFile, cfg config) (map[string]map[string]string, map[string]map[string]string, error) {
	if cfg.redisAddr == "" && cfg.rabbitURL == "" {
		return nil, nil, nil
	}
	var dirs []string
	for _, a := range rf.Apps {
		if len(cfg.apps) > 0 && !slices.Contains(cfg.apps, a.AppID) {
			continue // the plan rejects overrides of components no selected app loads
		}
		for _, d := range a.ResourcesPaths {
			if !slices.Contains(dirs, d) {
				dirs = append(dirs, d)
			}
		}
	}
	md := map[string]map[string]string{}
	for _, d := range dirs {
		resources, err := devstack.LoadResources(d)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range resources {
			switch {
			case cfg.redisAddr != "" && r.Kind == "Component" && strings.HasSuffix(r.Type, ".redis"):
				md[r.Name] = map[string]string{"redisHost": cfg.redisAddr}
			case cfg.rabbitURL != "" && r.Kind == "Component" && strings.HasSuffix(r.Type, ".rabbitmq"):
				md[r.Name] = map[string]string{"connectionString": cfg.rabbitURL}
			}
		}
	}
	appEnv := map[string]map[string]string{}
	if cfg.redisAddr != "" {
		for _, a := range rf.Apps {
			if _, ok := a.Env["REDIS_ADDR"]; ok {
				appEnv[a.AppID] = map[string]string{"REDIS_ADDR": cfg.redisAddr}
			}
		}
	}
	return md, appEnv, nil
}

func announce(plan *devstack.Plan) {
	for _, a := range plan.Apps {
		fmt.Printf("  %-10s app %s  sidecar %s\n", a.AppID, a.AppURL(), a.DaprHTTPURL())
	}
	if gw, ok := plan.App("gateway"); ok {
		fmt.Printf("groupbuy is up: gateway at %s/api/v1\n", gw.AppURL())
		return
	}
	var ids []string
	for _, a := range plan.Apps {
		ids = append(ids, a.AppID)
	}
	fmt.Printf("groupbuy is up: %s\n", strings.Join(ids, ", "))
}

// profileDir is the overlay directory of a profile: components/profiles/<name> next to the
// run file's dapr/ directory ("" for no profile).
func profileDir(runFile, profile string) string {
	if profile == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(runFile), "..", "components", "profiles", profile)
}
