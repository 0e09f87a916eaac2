package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/groupbuy/groupbuy/pkg/devstack"
	"github.com/groupbuy/groupbuy/tests/testinfra"
)

// Stack is the platform as `go tool task run` brings it up (pkg/devstack from dapr/dapr.yaml,
// every port shifted by --port-offset), on a Redis DB and RabbitMQ vhost of its own.
type Stack struct {
	Infra  *testinfra.Infra
	Plan   *devstack.Plan
	Sup    *devstack.Supervisor
	Redis  *redis.Client // the run's Redis DB
	LogDir string

	mu    sync.Mutex
	files map[string]*os.File
}

// stackEnv is what the bench sets on every app on top of the run file: the limiter must not
// cap the measurement, seeded users must be cheap to create, tokens must outlive the run, and
// nothing placed during a scenario may expire before its checks (S6 restarts the order app
// with a short pay window of its own).
func stackEnv(infra *testinfra.Infra, keyPrefix string) map[string]string {
	return map[string]string{
		"REDIS_ADDR":            infra.RedisAddr,
		"REDIS_DB":              strconv.Itoa(infra.RedisDB),
		"RATE_LIMIT_KEY_PREFIX": keyPrefix,
		"RATE_LIMIT_IP":         "100000000",
		"RATE_LIMIT_IP_BURST":   "100000000",
		"RATE_LIMIT_USER":       "100000000",
		"RATE_LIMIT_USER_BURST": "100000000",
		"RATE_LIMIT_REGISTER":   "100000000",
		"PASSWORD_HASH_COST":    "4",
		"JWT_TTL":               "3h",
		"PAY_WINDOW":            "2h",
		"PPROF":                 "true", // profiles of the apps during a run (docs/BENCHMARKS.md)
	}
}

// startStack provisions the run's Redis DB and vhost and starts the stack.
func startStack(ctx context.Context, cfg Config, logf func(string, ...any)) (*Stack, error) {
	mode := testinfra.Mode(os.Getenv(testinfra.EnvMode))
	if mode == "" {
		mode = testinfra.ModeLocal
	}
	infra, err := testinfra.Provision(ctx, testinfra.Options{Mode: mode, Logf: logf})
	if err != nil {
		return nil, err
	}
	s := &Stack{Infra: infra, LogDir: filepath.Join(cfg.OutDir, "logs"), files: map[string]*os.File{}}
	if err := os.MkdirAll(s.LogDir, 0o755); err != nil {
		s.closeInfra()
		return nil, err
	}
	components, err := componentOverrides(filepath.Join(cfg.RepoRoot, "components"), infra)
	if err != nil {
		s.closeInfra()
		return nil, err
	}
	if cfg.ExpiryTick != "" {
		components["order-expiry"] = map[string]string{"schedule": "@every " + cfg.ExpiryTick}
	}
	plan, err := devstack.Materialize(filepath.Join(cfg.RepoRoot, "dapr", "dapr.yaml"), devstack.Options{
		OutDir:            filepath.Join(cfg.OutDir, "run"),
		Ports:             devstack.OffsetPorts(cfg.PortOffset),
		Env:               stackEnv(infra, "bench:"+infra.RunID+":"),
		ComponentMetadata: components,
	})
	if err != nil {
		s.closeInfra()
		return nil, err
	}
	s.Plan = plan
	if err := checkPortsFree(plan); err != nil {
		s.closeInfra()
		return nil, fmt.Errorf("%w (choose another --port-offset)", err)
	}
	s.Sup, err = devstack.NewSupervisor(plan, devstack.SupervisorOptions{
		ReadyTimeout: 3 * time.Minute,
		StopGrace:    5 * time.Second,
		Output:       s.logFile,
	})
	if err != nil {
		s.closeInfra()
		return nil, err
	}
	if err := s.Sup.Start(ctx); err != nil {
		_ = s.Sup.Stop()
		s.closeInfra()
		return nil, fmt.Errorf("start stack (logs in %s): %w", s.LogDir, err)
	}
	s.Redis = redis.NewClient(&redis.Options{Addr: infra.RedisAddr, DB: infra.RedisDB, PoolSize: 64})
	return s, nil
}

// logFile gives each process a log file of its own under LogDir.
func (s *Stack) logFile(name string) io.Writer {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f, ok := s.files[name]; ok {
		return f
	}
	f, err := os.OpenFile(filepath.Join(s.LogDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	s.files[name] = f
	return f
}

// Stop ends every process and gives the Redis DB and vhost back.
func (s *Stack) Stop() error {
	var errs []error
	if s.Sup != nil {
		errs = append(errs, s.Sup.Stop())
	}
	if s.Redis != nil {
		errs = append(errs, s.Redis.Close())
	}
	s.closeInfra()
	s.mu.Lock()
	for _, f := range s.files {
		_ = f.Close()
	}
	s.mu.Unlock()
	return errors.Join(errs...)
}

func (s *Stack) closeInfra() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Infra.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench: release redis db / vhost:", err)
	}
}

// App returns an app of the plan.
func (s *Stack) App(id string) devstack.App {
	a, ok := s.Plan.App(id)
	if !ok {
		panic("bench: no app " + id)
	}
	return a
}

// GatewayURL is the public API root.
func (s *Stack) GatewayURL() string { return s.App("gateway").AppURL() + "/api/v1" }

// AdminURL is an app's admin listener (/metrics).
func (s *Stack) AdminURL(id string) string {
	return "http://127.0.0.1:" + s.App(id).Env["ADMIN_PORT"]
}

// SidecarMetricsURL is an app's daprd /metrics.
func (s *Stack) SidecarMetricsURL(id string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/metrics", s.App(id).MetricsPort)
}

// DaprToken is the token the sidecars' APIs require (dapr-api-token).
func (s *Stack) DaprToken() string {
	_, t := s.Sup.Tokens()
	return t
}

// AppIDs lists the apps in run-file order.
func (s *Stack) AppIDs() []string {
	var ids []string
	for _, a := range s.Plan.Apps {
		ids = append(ids, a.AppID)
	}
	return ids
}

// Procs lists the stack's running processes (apps, sidecars, placement, scheduler) and the
// Redis and RabbitMQ servers, for cost accounting.
func (s *Stack) Procs() []proc {
	var out []proc
	for _, p := range s.Sup.Processes() {
		if p.Running {
			out = append(out, proc{Name: p.Name, PID: p.PID})
		}
	}
	return append(out, s.InfraProcs()...)
}

// Dead names the stack's processes that exited (a crashed sidecar under load, say); nil
// while every process runs.
func (s *Stack) Dead() error {
	var errs []error
	for _, p := range s.Sup.Processes() {
		if !p.Running {
			errs = append(errs, fmt.Errorf("%s (pid %d) exited: %s; see %s", p.Name, p.PID, p.Exit, filepath.Join(s.LogDir, p.Name+".log")))
		}
	}
	return errors.Join(errs...)
}

// AppProcs lists one app's process and its sidecar's.
func (s *Stack) AppProcs(id string) []proc {
	var out []proc
	for _, p := range s.Sup.Processes() {
		if p.Running && (p.Name == id || p.Name == id+"-daprd") {
			out = append(out, proc{Name: p.Name, PID: p.PID})
		}
	}
	return out
}

// InfraProcs finds the Redis and RabbitMQ servers by the ports they listen on.
func (s *Stack) InfraProcs() []proc {
	var out []proc
	if port := portOf(s.Infra.RedisAddr); port > 0 {
		if pid := listenerPID(port); pid > 0 {
			out = append(out, proc{Name: "redis-server", PID: pid})
		}
	}
	if port := amqpPort(s.Infra.RabbitURL); port > 0 {
		if pid := listenerPID(port); pid > 0 {
			out = append(out, proc{Name: "rabbitmq", PID: pid})
		}
	}
	return out
}

// RedisProcs is the Redis server alone (for scenarios that do not touch the broker).
func (s *Stack) RedisProcs() []proc {
	var out []proc
	for _, p := range s.InfraProcs() {
		if p.Name == "redis-server" {
			out = append(out, p)
		}
	}
	return out
}

// restartApp stops an app and its sidecar and starts them again with env changed (the same
// ports). The plan's copy of the app shares its env map, which StartApp reads.
func (s *Stack) restartApp(ctx context.Context, id string, env map[string]string) error {
	if err := s.Sup.StopApp(id); err != nil {
		return err
	}
	a := s.App(id)
	for k, v := range env {
		a.Env[k] = v
	}
	return s.Sup.StartApp(ctx, id)
}

func amqpPort(rawURL string) int {
	u, err := url.Parse(rawURL)
	if err != nil {
		return 0
	}
	if u.Port() == "" {
		return 5672
	}
	n, _ := strconv.Atoi(u.Port())
	return n
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

func checkPortsFree(plan *devstack.Plan) error {
	ports := []int{plan.Placement.Port, plan.Placement.RaftPort, plan.Placement.HealthzPort, plan.Scheduler.Port,
		plan.Scheduler.HealthzPort, plan.Scheduler.EtcdClientPort, plan.Scheduler.EtcdPeerPort}
	for _, a := range plan.Apps {
		ports = append(ports, a.AppPort, a.DaprHTTPPort, a.DaprGRPCPort, a.DaprInternalGRPCPort, a.MetricsPort)
		if n, err := strconv.Atoi(a.Env["ADMIN_PORT"]); err == nil {
			ports = append(ports, n)
		}
	}
	for _, p := range ports {
		if p <= 0 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return fmt.Errorf("port %d is taken", p)
		}
		_ = l.Close()
	}
	return nil
}

// child is a process the bench runs besides the stack (an extra sidecar, the baseline
// server), in a process group of its own that dies with the bench.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startChild starts path with args, output appended to out.
func startChild(name, path string, args, env []string, dir string, out io.Writer) (*child, error) {
	c := &child{name: name, done: make(chan struct{})}
	c.cmd = exec.Command(path, args...)
	c.cmd.Dir = dir
	c.cmd.Env = append(os.Environ(), env...)
	c.cmd.Stdout, c.cmd.Stderr = out, out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	c.cmd.WaitDelay = 2 * time.Second
	started := make(chan error, 1)
	go func() {
		// Pdeathsig follows the thread that forked the child: keep this one for its life.
		runtime.LockOSThread()
		if err := c.cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the group, then SIGKILL after 5s.
func (c *child) stop() {
	if c.exited() {
		return
	}
	_ = syscall.Kill(-c.pid(), syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-c.pid(), syscall.SIGKILL)
		<-c.done
	}
}

// waitHTTP polls url until it answers status, the child dies, or timeout passes.
func waitHTTP(ctx context.Context, url string, status int, c *child, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		if c != nil && c.exited() {
			return fmt.Errorf("%s exited while starting: %v", c.name, c.err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := hc.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %s", url, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// engineSidecar is an extra daprd with the inventory's app id and no app, for an in-process
// engine driver (S1) to use as its sidecar.
type engineSidecar struct {
	*child
	app devstack.App
}

// startEngineSidecar starts a daprd as the inventory app's would run, on free ports, without
// an app channel: the stockbench process talks to it over gRPC like inventory does.
func (s *Stack) startEngineSidecar(ctx context.Context, n int) (*engineSidecar, error) {
	a := s.App("inventory")
	a.AppPort = 0
	a.EnableAppHealthCheck = false
	a.EnableProfiling = false
	a.Command = nil
	ports := devstack.FreePorts()
	name := fmt.Sprintf("engine-%d", n)
	for _, p := range []struct {
		kind devstack.PortKind
		port *int
	}{
		{devstack.PortDaprHTTP, &a.DaprHTTPPort},
		{devstack.PortDaprGRPC, &a.DaprGRPCPort},
		{devstack.PortDaprInternalGRPC, &a.DaprInternalGRPCPort},
		{devstack.PortMetrics, &a.MetricsPort},
	} {
		port, err := ports(name, p.kind, 0)
		if err != nil {
			return nil, err
		}
		*p.port = port
	}
	c, err := startChild(name+"-daprd", filepath.Join(s.Plan.DaprBinDir, "daprd"), s.Plan.DaprdArgs(a),
		s.Sup.SidecarEnv(), a.AppDirPath, s.logFile(name+"-daprd"))
	if err != nil {
		return nil, err
	}
	if err := waitHTTP(ctx, a.DaprHTTPURL()+"/v1.0/healthz", http.StatusNoContent, c, 90*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return &engineSidecar{child: c, app: a}, nil
}

// componentOverrides points the components of dir at the run's infrastructure: the state store
// at its Redis DB, and every RabbitMQ component (pubsub, pubsub-broadcast, the order app's
// relay components pubsub-relay-N, whatever components/ declares) at its vhost. A RabbitMQ
// component left on the default vhost would publish where no subscriber of the run listens.
func componentOverrides(dir string, infra *testinfra.Infra) (map[string]map[string]string, error) {
	resources, err := devstack.LoadResources(dir)
	if err != nil {
		return nil, err
	}
	md := map[string]map[string]string{
		"statestore": {"redisHost": infra.RedisAddr, "redisDB": strconv.Itoa(infra.RedisDB)},
	}
	for _, r := range resources {
		if r.Kind == "Component" && strings.HasSuffix(r.Type, ".rabbitmq") {
			md[r.Name] = map[string]string{"connectionString": infra.RabbitURL}
		}
	}
	return md, nil
}
