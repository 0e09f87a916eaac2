package devstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ProcessSpec describes a child process run by a Supervisor.
type ProcessSpec struct {
	Name  string   // log prefix and the name used in errors
	Path  string   // executable; a relative path is taken relative to Dir
	Args  []string // without the program name
	Dir   string
	Env   []string // added to the launcher's environment; later entries win
	Ready []ReadyCheck
}

// ReadyCheck is a probe that must pass before a process counts as ready: an HTTP GET of URL
// answering Status, or, for a "tcp://host:port" URL, an accepted TCP connection.
type ReadyCheck struct {
	Name   string // what is probed, e.g. "gateway-daprd"
	URL    string
	Status int
	// Explain, when set, is fetched once if the check times out and its answer quoted: for a
	// sidecar, the app's health endpoint, since daprd stays unready while its probe fails.
	Explain string
}

// SupervisorOptions tune a Supervisor; zero values take the documented defaults.
type SupervisorOptions struct {
	// Output returns the writer for a process's output, given its name ("placement",
	// "gateway", "gateway-daprd", ...; "devstack" for the supervisor's own messages). Every
	// line is written whole, prefixed with the padded name and "|". Default: os.Stdout.
	Output func(name string) io.Writer
	// ReadyTimeout bounds each wait for readiness; default 90s.
	ReadyTimeout time.Duration
	// StopGrace is how long a process group has between SIGTERM and SIGKILL; default 10s.
	StopGrace time.Duration
	// AppAPIToken is what daprd sends to the apps in the dapr-api-token header, and
	// DaprAPIToken what the apps must send to daprd. Default: random per Supervisor.
	AppAPIToken  string
	DaprAPIToken string
	// TailLines is how many last lines of a process's output an error quotes; default 20.
	TailLines int
}

// Process tiers: Stop ends higher tiers first.
const (
	tierInfra = iota
	tierControlPlane
	tierApps
)

// Supervisor runs the processes of a Plan: placement, scheduler, and every app with its daprd.
// Each child gets its own process group; Stop ends every group, so nothing is orphaned.
// Methods are safe for concurrent use.
type Supervisor struct {
	plan *Plan
	opts SupervisorOptions

	width int        // name column width of the log prefix
	outMu sync.Mutex // one whole line at a time, whatever writers Output returns

	mu    sync.Mutex
	procs []*process // in start order

	stopping atomic.Bool
	failOnce sync.Once
	failed   chan struct{}
	failErr  error
}

type process struct {
	spec ProcessSpec
	tier int
	cmd  *exec.Cmd
	tail *tail

	expected atomic.Bool // a stop was asked for; the exit is not a failure
	done     chan struct{}
	state    string // exit description, valid after done
}

// NewSupervisor returns a Supervisor for plan. It starts nothing.
func NewSupervisor(plan *Plan, opts SupervisorOptions) (*Supervisor, error) {
	if opts.Output == nil {
		opts.Output = func(string) io.Writer { return os.Stdout }
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 90 * time.Second
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = 10 * time.Second
	}
	if opts.TailLines <= 0 {
		opts.TailLines = 20
	}
	for _, tok := range []*string{&opts.AppAPIToken, &opts.DaprAPIToken} {
		if *tok == "" {
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				return nil, fmt.Errorf("generate api token: %w", err)
			}
			*tok = hex.EncodeToString(b)
		}
	}
	// "gateway        | ...": at least 15 columns, more when a sidecar name needs them.
	width := 15
	for _, a := range plan.Apps {
		width = max(width, len(a.DaprdName())+1)
	}
	width = min(width, 24)
	return &Supervisor{plan: plan, opts: opts, width: width, failed: make(chan struct{})}, nil
}

// Plan returns the plan the supervisor runs.
func (s *Supervisor) Plan() *Plan { return s.plan }

// Tokens returns the API tokens given to every app and daprd.
func (s *Supervisor) Tokens() (appAPIToken, daprAPIToken string) {
	return s.opts.AppAPIToken, s.opts.DaprAPIToken
}

// SidecarEnv is the environment that `dapr run` needs so its daprd and apps get the API
// tokens and stay on loopback: APP_API_TOKEN, DAPR_API_TOKEN, DAPR_HOST_IP=127.0.0.1.
func (s *Supervisor) SidecarEnv() []string {
	return []string{
		"APP_API_TOKEN=" + s.opts.AppAPIToken,
		"DAPR_API_TOKEN=" + s.opts.DaprAPIToken,
		"DAPR_HOST_IP=" + loopback,
	}
}

// ProcessInfo describes a child the supervisor started.
type ProcessInfo struct {
	Name    string
	PID     int // also its process group id
	Running bool
	Exit    string // exit status once it has ended
}

// Processes lists the children in start order, the latest run of each name.
func (s *Supervisor) Processes() []ProcessInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProcessInfo, 0, len(s.procs))
	for _, pr := range s.procs {
		info := ProcessInfo{Name: pr.spec.Name, PID: pr.cmd.Process.Pid, Running: !isDone(pr)}
		if !info.Running {
			info.Exit = pr.state
		}
		out = append(out, info)
	}
	return out
}

// Logf writes a line of the supervisor's own under the name "devstack".
func (s *Supervisor) Logf(format string, args ...any) {
	s.writeLine(s.opts.Output("devstack"), s.prefix("devstack"), fmt.Sprintf(format, args...))
}

// Start starts the control plane and then every app of the plan, and waits until all are
// ready. After an error, call Stop to end whatever did start.
func (s *Supervisor) Start(ctx context.Context) error {
	if err := s.StartControlPlane(ctx); err != nil {
		return err
	}
	return s.StartApps(ctx)
}

// StartControlPlane starts placement and scheduler and waits for their healthz endpoints.
func (s *Supervisor) StartControlPlane(ctx context.Context) error {
	p := s.plan
	if err := os.MkdirAll(p.Scheduler.DataDir, 0o755); err != nil {
		return fmt.Errorf("scheduler data dir: %w", err)
	}
	specs := []ProcessSpec{
		{
			Name: "placement",
			Path: filepath.Join(p.DaprBinDir, "placement"),
			Args: p.PlacementArgs(),
			Dir:  p.OutDir,
			Ready: []ReadyCheck{{
				Name: "placement", Status: http.StatusOK,
				URL: fmt.Sprintf("http://%s:%d/healthz", loopback, p.Placement.HealthzPort),
			}},
		},
		{
			Name: "scheduler",
			Path: filepath.Join(p.DaprBinDir, "scheduler"),
			Args: p.SchedulerArgs(),
			Dir:  p.OutDir,
			Ready: []ReadyCheck{{
				Name: "scheduler", Status: http.StatusOK,
				URL: fmt.Sprintf("http://%s:%d/healthz", loopback, p.Scheduler.HealthzPort),
			}},
		},
	}
	return s.startAll(ctx, tierControlPlane, specs)
}

// StartApps starts every app of the plan with its daprd and waits until all are ready.
func (s *Supervisor) StartApps(ctx context.Context) error {
	var specs []ProcessSpec
	for _, a := range s.plan.Apps {
		as, err := s.appSpecs(a)
		if err != nil {
			return err
		}
		specs = append(specs, as...)
	}
	return s.startAll(ctx, tierApps, specs)
}

// StartApp starts an app stopped by StopApp or KillApp again, with its daprd and the same
// ports, and waits until both are ready.
func (s *Supervisor) StartApp(ctx context.Context, appID string) error {
	a, ok := s.plan.App(appID)
	if !ok {
		return fmt.Errorf("start app: %q is not in the plan", appID)
	}
	for _, name := range []string{a.DaprdName(), a.AppID} {
		if pr := s.find(name); pr != nil && !isDone(pr) {
			return fmt.Errorf("start app: %s is still running", name)
		}
	}
	specs, err := s.appSpecs(a)
	if err != nil {
		return err
	}
	return s.startAll(ctx, tierApps, specs)
}

// StopApp stops an app and its daprd: SIGTERM, then SIGKILL after StopGrace. Wait does not
// count this as a failure.
func (s *Supervisor) StopApp(appID string) error { return s.stopApp(appID, false) }

// KillApp kills an app and its daprd with SIGKILL at once, as a crash would.
func (s *Supervisor) KillApp(appID string) error { return s.stopApp(appID, true) }

func (s *Supervisor) stopApp(appID string, kill bool) error {
	a, ok := s.plan.App(appID)
	if !ok {
		return fmt.Errorf("stop app: %q is not in the plan", appID)
	}
	var procs []*process
	for _, name := range []string{a.AppID, a.DaprdName()} {
		if pr := s.find(name); pr != nil {
			procs = append(procs, pr)
		}
	}
	if len(procs) == 0 {
		return fmt.Errorf("stop app: %q was never started", appID)
	}
	return s.stopProcs(procs, kill)
}

// StartProcess starts more children (in the apps tier, so Stop ends them before the control
// plane), all before waiting for their ready checks: an app and its sidecar may need each
// other to become ready. The dev launcher runs `dapr run -f` this way.
func (s *Supervisor) StartProcess(ctx context.Context, specs ...ProcessSpec) error {
	return s.startAll(ctx, tierApps, specs)
}

// EnsureInfra dials the plan's dependencies. With startMissing, each unreachable one on a
// loopback address whose server binary is on PATH is started as a supervised child (and
// said so); the error lists the ones still unreachable, with how to fix each.
func (s *Supervisor) EnsureInfra(ctx context.Context, startMissing bool) error {
	var errs []error
	for _, u := range unreachable(ctx, s.plan.Dependencies) {
		if !startMissing {
			errs = append(errs, u)
			continue
		}
		spec, timeout, err := dependencyProcess(u.Dependency, s.plan.OutDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w\n  not started for you: %v", u, err))
			continue
		}
		s.Logf("%s is not reachable at %s; starting %s on it for this session (its data goes away on exit)",
			u.Dependency.Kind, u.Dependency.Addr, filepath.Base(spec.Path))
		startCtx, cancel := context.WithTimeout(ctx, timeout)
		err = s.startAll(startCtx, tierInfra, []ProcessSpec{spec})
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("%w\n  starting it failed: %v", u, err))
		}
	}
	return errors.Join(errs...)
}

// Wait blocks until ctx ends (returning ctx.Err()) or a child exits without being asked to
// (returning an error naming it, its exit status and its last output lines).
func (s *Supervisor) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.failed:
		return s.failErr
	}
}

// Stop ends every child: apps and sidecars first, then the control plane, then dependencies
// it started; within a tier in reverse start order, SIGTERM to each process group, SIGKILL to
// groups still there after StopGrace. Safe to call more than once, and after a failed Start.
func (s *Supervisor) Stop() error {
	s.mu.Lock()
	s.stopping.Store(true)
	procs := slices.Clone(s.procs)
	s.mu.Unlock()
	var errs []error
	for _, tier := range []int{tierApps, tierControlPlane, tierInfra} {
		var group []*process
		for i := len(procs) - 1; i >= 0; i-- {
			if procs[i].tier == tier {
				group = append(group, procs[i])
			}
		}
		if err := s.stopProcs(group, false); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// stopProcs signals every process group, waits up to StopGrace for the leaders, then
// SIGKILLs each group, which also reaps children the leader left behind.
func (s *Supervisor) stopProcs(procs []*process, kill bool) error {
	sig := syscall.SIGTERM
	if kill {
		sig = syscall.SIGKILL
	}
	var errs []error
	for _, pr := range procs {
		pr.expected.Store(true)
		if isDone(pr) {
			continue
		}
		if err := signalGroup(pr.cmd.Process.Pid, sig); err != nil {
			errs = append(errs, fmt.Errorf("signal %s: %w", pr.spec.Name, err))
		}
	}
	// A closed channel stays ready, so every process after the deadline sees it too.
	deadline := make(chan struct{})
	timer := time.AfterFunc(s.opts.StopGrace, func() { close(deadline) })
	defer timer.Stop()
	for _, pr := range procs {
		select {
		case <-pr.done:
		case <-deadline:
			if !isDone(pr) {
				s.Logf("%s did not stop within %s; killing it", pr.spec.Name, s.opts.StopGrace)
			}
		}
		if err := signalGroup(pr.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			errs = append(errs, fmt.Errorf("kill %s: %w", pr.spec.Name, err))
		}
		<-pr.done
	}
	return errors.Join(errs...)
}

// appSpecs returns the daprd and app processes of a, as `dapr run` would start them: daprd
// first, both with cwd appDirPath.
func (s *Supervisor) appSpecs(a App) ([]ProcessSpec, error) {
	daprd := filepath.Join(s.plan.DaprBinDir, "daprd")
	if _, err := os.Stat(daprd); err != nil {
		return nil, fmt.Errorf("daprd not found in %s (install it: bash scripts/dapr-install.sh, or set DAPR_BIN_DIR): %w",
			s.plan.DaprBinDir, err)
	}
	if st, err := os.Stat(a.AppDirPath); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("app %q: appDirPath %s is not a directory", a.AppID, a.AppDirPath)
	}
	specs := []ProcessSpec{{
		Name:  a.DaprdName(),
		Path:  daprd,
		Args:  s.plan.DaprdArgs(a),
		Dir:   a.AppDirPath,
		Env:   s.SidecarEnv(),
		Ready: []ReadyCheck{SidecarReadyCheck(a)},
	}}
	if len(a.Command) == 0 {
		return specs, nil // sidecar only, as with the CLI
	}
	bin := a.Command[0]
	if filepath.IsAbs(bin) {
		if _, err := os.Stat(bin); err != nil {
			return nil, fmt.Errorf("app %q: %s not found (build the apps: go build -o bin/ ./apps/...)", a.AppID, bin)
		}
	} else if _, err := exec.LookPath(bin); err != nil {
		return nil, fmt.Errorf("app %q: command %q: %w", a.AppID, bin, err)
	}
	app := ProcessSpec{
		Name: a.AppID,
		Path: bin,
		Args: a.Command[1:],
		Dir:  a.AppDirPath,
		Env:  append(s.plan.AppEnv(a), "APP_API_TOKEN="+s.opts.AppAPIToken, "DAPR_API_TOKEN="+s.opts.DaprAPIToken),
	}
	if a.AppPort > 0 {
		app.Ready = []ReadyCheck{AppReadyCheck(a)}
	}
	return append(specs, app), nil
}

// SidecarReadyCheck probes daprd's healthz endpoint, which answers 204 once daprd is up.
// With actors enabled daprd answers 500 until its app health probe passes, hence Explain.
func SidecarReadyCheck(a App) ReadyCheck {
	c := ReadyCheck{Name: a.DaprdName(), URL: a.DaprHTTPURL() + "/v1.0/healthz", Status: http.StatusNoContent}
	if a.EnableAppHealthCheck && a.AppPort > 0 {
		path := a.AppHealthCheckPath
		if path == "" {
			path = "/healthz"
		}
		c.Explain = a.AppURL() + path
	}
	return c
}

// AppReadyCheck probes the app's /readyz endpoint for 200.
func AppReadyCheck(a App) ReadyCheck {
	return ReadyCheck{Name: a.AppID, URL: a.AppURL() + "/readyz", Status: http.StatusOK}
}

// startAll starts specs in order, then waits until all their checks pass, a process exits,
// ReadyTimeout passes, or ctx ends.
func (s *Supervisor) startAll(ctx context.Context, tier int, specs []ProcessSpec) error {
	if s.stopping.Load() {
		return errors.New("supervisor is stopping")
	}
	var started []*process
	for _, spec := range specs {
		pr, err := s.startChild(spec, tier)
		if err != nil {
			return err
		}
		started = append(started, pr)
	}
	return s.waitReady(ctx, started)
}

// startChild starts one process with its output piped through line writers.
func (s *Supervisor) startChild(spec ProcessSpec, tier int) (*process, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Dir = spec.Dir
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.SysProcAttr = sysProcAttr()
	// A grandchild that keeps the pipes open must not keep Wait from returning.
	cmd.WaitDelay = 2 * time.Second

	pr := &process{spec: spec, tier: tier, cmd: cmd, tail: newTail(s.opts.TailLines), done: make(chan struct{})}
	out := s.opts.Output(spec.Name)
	stdout := &lineWriter{s: s, dst: out, prefix: s.prefix(spec.Name), tail: pr.tail}
	stderr := &lineWriter{s: s, dst: out, prefix: s.prefix(spec.Name), tail: pr.tail}
	cmd.Stdout, cmd.Stderr = stdout, stderr

	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that forked the child exits, not the process: keep
		// this goroutine on its own thread for the child's whole life. Returning while
		// locked ends the thread, which is harmless once the child is gone.
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		stdout.flush()
		stderr.flush()
		pr.state = exitState(cmd, err)
		close(pr.done)
		if !pr.expected.Load() && !s.stopping.Load() {
			s.fail(fmt.Errorf("%s exited unexpectedly (%s)%s", spec.Name, pr.state, pr.tail.quote(spec.Name)))
		}
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping.Load() {
		// Stop has taken its list already; do not leave this one behind.
		pr.expected.Store(true)
		_ = signalGroup(cmd.Process.Pid, syscall.SIGKILL)
		return nil, fmt.Errorf("start %s: supervisor is stopping", spec.Name)
	}
	if i := slices.IndexFunc(s.procs, func(p *process) bool { return p.spec.Name == spec.Name }); i >= 0 {
		s.procs[i] = pr // a restart keeps its place in the stop order
	} else {
		s.procs = append(s.procs, pr)
	}
	return pr, nil
}

func (s *Supervisor) fail(err error) {
	s.failOnce.Do(func() {
		s.failErr = err
		close(s.failed)
	})
}

func (s *Supervisor) find(name string) *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pr := range s.procs {
		if pr.spec.Name == name {
			return pr
		}
	}
	return nil
}

// waitReady polls every check of procs until all pass. On timeout it names each check that
// is not passing with its last result and the owning process's last output lines.
func (s *Supervisor) waitReady(ctx context.Context, procs []*process) error {
	ctx, cancel := context.WithTimeout(ctx, s.opts.ReadyTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}

	type pending struct {
		pr    *process
		check ReadyCheck
		last  string
	}
	var todo []*pending
	for _, pr := range procs {
		for _, c := range pr.spec.Ready {
			todo = append(todo, &pending{pr: pr, check: c, last: "not probed yet"})
		}
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, pr := range procs {
			if isDone(pr) {
				return fmt.Errorf("%s exited while starting (%s)%s", pr.spec.Name, pr.state, pr.tail.quote(pr.spec.Name))
			}
		}
		todo = slices.DeleteFunc(todo, func(p *pending) bool {
			ok, last := probe(ctx, client, p.check)
			if ctx.Err() == nil { // keep the last real answer, not the cancellation
				p.last = last
			}
			return ok
		})
		if len(todo) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			var b strings.Builder
			fmt.Fprintf(&b, "not ready (%v):", context.Cause(ctx))
			quoted := map[string]bool{}
			for _, p := range todo {
				fmt.Fprintf(&b, "\n  %s: %s: %s", p.check.Name, p.check.URL, p.last)
				if p.check.Explain != "" {
					// ctx is done; the explanation gets a moment of its own.
					ectx, ecancel := context.WithTimeout(context.Background(), 2*time.Second)
					_, last := probe(ectx, client, ReadyCheck{URL: p.check.Explain, Status: http.StatusOK})
					ecancel()
					fmt.Fprintf(&b, "\n    (daprd's app health probe, sent without dapr-api-token: GET %s: %s)", p.check.Explain, last)
				}
			}
			lines := s.opts.TailLines
			if len(todo) > 1 {
				lines = min(lines, 8) // several processes: keep the message readable
			}
			for _, p := range todo {
				if !quoted[p.pr.spec.Name] {
					quoted[p.pr.spec.Name] = true
					b.WriteString(p.pr.tail.quoteLast(p.pr.spec.Name, lines))
				}
			}
			return errors.New(b.String())
		case <-tick.C:
		}
	}
}

// probe runs one check and describes its result.
func probe(ctx context.Context, client *http.Client, c ReadyCheck) (bool, string) {
	if addr, ok := strings.CutPrefix(c.URL, "tcp://"); ok {
		if err := dialOnce(ctx, addr, time.Second); err != nil {
			return false, err.Error()
		}
		return true, "connected"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return false, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) {
			return false, op.Err.Error()
		}
		return false, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	if resp.StatusCode != c.Status {
		return false, fmt.Sprintf("status %d, want %d %s", resp.StatusCode, c.Status, strings.TrimSpace(string(body)))
	}
	return true, "ok"
}

func isDone(pr *process) bool {
	select {
	case <-pr.done:
		return true
	default:
		return false
	}
}

func exitState(cmd *exec.Cmd, err error) string {
	if st := cmd.ProcessState; st != nil {
		return st.String()
	}
	if err != nil {
		return err.Error()
	}
	return "exited"
}

func (s *Supervisor) prefix(name string) string {
	return fmt.Sprintf("%-*s| ", s.width, name)
}

func (s *Supervisor) writeLine(dst io.Writer, prefix, line string) {
	s.outMu.Lock()
	defer s.outMu.Unlock()
	_, _ = io.WriteString(dst, prefix+line+"\n") // a lost log line must not stop the stack
}

// lineWriter splits a child's output into lines, writes each with the prefix, and keeps the
// last ones for error messages. exec copies each pipe from one goroutine, so Write needs no lock.
type lineWriter struct {
	s      *Supervisor
	dst    io.Writer
	prefix string
	tail   *tail
	buf    []byte
}

const maxLine = 64 << 10

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.emit(w.buf)
		w.buf = nil
	}
	return len(b), nil
}

func (w *lineWriter) flush() {
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

func (w *lineWriter) emit(line []byte) {
	s := strings.TrimRight(string(line), "\r")
	w.tail.add(s)
	w.s.writeLine(w.dst, w.prefix, s)
}

// tail keeps the last n lines of a process's output.
type tail struct {
	mu    sync.Mutex
	n     int
	lines []string
}

func newTail(n int) *tail { return &tail{n: n} }

func (t *tail) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lines = append(t.lines, line)
	if len(t.lines) > t.n {
		t.lines = slices.Delete(t.lines, 0, len(t.lines)-t.n)
	}
}

// quote renders the kept lines for an error message, or nothing when there are none.
func (t *tail) quote(name string) string { return t.quoteLast(name, t.n) }

// quoteLast renders at most the last n kept lines.
func (t *tail) quoteLast(name string, n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := t.lines[max(0, len(t.lines)-n):]
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("\n  last %d lines of %s:\n    %s", len(lines), name, strings.Join(lines, "\n    "))
}
