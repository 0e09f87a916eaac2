package devstack

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

const loopback = "127.0.0.1"

// Control-plane defaults, as the Dapr CLI uses them in self-hosted mode.
const (
	defaultPlacementPort = 50005
	defaultSchedulerPort = 50006
	placementID          = "dapr-placement-0"
	schedulerID          = "dapr-scheduler-server-0"
)

// ControlPlanePorts are the ports placement and scheduler need besides the ones daprd dials
// (those come from the run file's placementHostAddress and schedulerHostAddress). The
// defaults keep clear of the binaries' own (8080 for healthz, 2379/2380 for etcd), which
// collide with common local services.
type ControlPlanePorts struct {
	PlacementRaft       int
	PlacementHealthz    int
	SchedulerHealthz    int
	SchedulerEtcdClient int
	SchedulerEtcdPeer   int
}

// DefaultControlPlanePorts returns the ports used for fields left zero in Options.ControlPlane.
func DefaultControlPlanePorts() ControlPlanePorts {
	return ControlPlanePorts{
		PlacementRaft:       50010,
		PlacementHealthz:    50011,
		SchedulerHealthz:    50012,
		SchedulerEtcdClient: 50013,
		SchedulerEtcdPeer:   50014,
	}
}

// Options tune how a run file becomes a Plan.
type Options struct {
	// OutDir receives the effective files (".run" for the dev launcher, a temp dir in tests).
	// Required.
	OutDir string
	// Ports remaps every port; nil keeps the run file's. See OffsetPorts and FreePorts.
	Ports PortMapper
	// PortEnvVars names app env vars that hold a port and are remapped with the others; nil
	// means ADMIN_PORT. Values set through Env or AppEnv are taken as they are.
	PortEnvVars []string
	// Env is added to every app's environment, AppEnv to one app's (by app id); both win
	// over the run file.
	Env    map[string]string
	AppEnv map[string]map[string]string
	// ComponentMetadata overrides spec.metadata values by component name, then metadata
	// name; a value replaces the existing one (or its secretKeyRef) or is added.
	ComponentMetadata map[string]map[string]string
	// OTLPEndpoint, when set, makes every sidecar export traces over OTLP/HTTP to it
	// (host:port, or a URL such as http://127.0.0.1:4318).
	OTLPEndpoint string
	// DaprBinDir holds daprd, placement and scheduler; default $DAPR_BIN_DIR, else ~/.dapr/bin.
	DaprBinDir string
	// Apps selects a subset of the run file's apps by id; empty means all.
	Apps []string
	// RepoRoot is the base for relative secretsFile paths in local-file secret stores when no
	// app loads them (otherwise the app's directory is, as for daprd);
	// default: the nearest directory holding go.mod above the run file, else the run file
	// directory's parent.
	RepoRoot string
	// ControlPlane ports; zero fields take DefaultControlPlanePorts. They are remapped too.
	ControlPlane ControlPlanePorts
	// Overlay is a directory of resources that replace the run file's resources of the same
	// kind and name, or are added: an infrastructure profile (e.g. profiles/postgres swaps
	// the state store and the brokers). Empty means none.
	Overlay string
}

// Placement describes the placement service a Plan runs.
type Placement struct {
	Address     string // host:port daprd dials
	Port        int
	RaftPort    int
	HealthzPort int
}

// Scheduler describes the scheduler service a Plan runs.
type Scheduler struct {
	Address        string // host:port daprd dials
	Port           int
	HealthzPort    int
	EtcdClientPort int
	EtcdPeerPort   int
	DataDir        string // embedded etcd data; per peer port, since etcd pins its peer URL
}

// Plan is a run file made concrete: the apps to run with their final ports, env and paths,
// the control plane, and the effective files. Build it with NewPlan, write it with Write.
type Plan struct {
	Source     *RunFile // the run file as loaded
	OutDir     string   // absolute
	RepoRoot   string
	DaprBinDir string

	// Apps are the selected apps in run-file order with remapped ports, merged env, and
	// paths pointing at the effective resources and config. Their Env holds only the run
	// file's and Options' variables; AppEnv adds what the Dapr CLI sets.
	Apps []App

	Placement Placement
	Scheduler Scheduler

	// RunFilePath is the effective run file, usable with `dapr run -f`.
	RunFilePath string
	// CLIRuntimePath is the runtimePath of the effective run file: its .dapr/bin/daprd
	// execs DaprBinDir/daprd with the loopback-only flags the CLI does not pass.
	CLIRuntimePath string

	// Dependencies are the external services the selected apps' components need.
	Dependencies []Dependency

	portEnvVars  []string
	resourceSets []resourceSet
	configs      []configFile
}

type resourceSet struct {
	dir       string
	resources []Resource
	appIDs    []string // the apps that load this set
}

type configFile struct {
	path string
	data []byte
}

// App returns the selected app with the given id.
func (p *Plan) App(appID string) (App, bool) {
	for _, a := range p.Apps {
		if a.AppID == appID {
			return a, true
		}
	}
	return App{}, false
}

// Materialize loads the run file at path, builds its Plan and writes it.
func Materialize(path string, opts Options) (*Plan, error) {
	rf, err := LoadRunFile(path)
	if err != nil {
		return nil, err
	}
	p, err := NewPlan(rf, opts)
	if err != nil {
		return nil, err
	}
	if err := p.Write(); err != nil {
		return nil, err
	}
	return p, nil
}

// NewPlan applies opts to rf. It reads the resources and config files but writes nothing.
func NewPlan(rf *RunFile, opts Options) (*Plan, error) {
	if opts.OutDir == "" {
		return nil, errors.New("plan: OutDir is required")
	}
	out, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, fmt.Errorf("plan: %w", err)
	}
	mapPort := opts.Ports
	if mapPort == nil {
		mapPort = identityPorts
	}
	portEnv := opts.PortEnvVars
	if portEnv == nil {
		portEnv = []string{"ADMIN_PORT"}
	}
	p := &Plan{
		portEnvVars:    portEnv,
		Source:         rf,
		OutDir:         out,
		RepoRoot:       opts.RepoRoot,
		DaprBinDir:     opts.DaprBinDir,
		RunFilePath:    filepath.Join(out, "dapr.yaml"),
		CLIRuntimePath: filepath.Join(out, "cli-runtime"),
	}
	if p.RepoRoot == "" {
		p.RepoRoot = findRepoRoot(filepath.Dir(rf.Path))
	}
	// Write replaces resources dirs inside OutDir; keep it away from source trees.
	if out == p.RepoRoot || out == filepath.Dir(rf.Path) {
		return nil, fmt.Errorf("plan: OutDir %s must be a directory of its own, not the repository or run-file directory", out)
	}
	if p.DaprBinDir == "" {
		p.DaprBinDir, err = defaultDaprBinDir()
		if err != nil {
			return nil, err
		}
	}

	selected, err := selectApps(rf.Apps, opts.Apps)
	if err != nil {
		return nil, err
	}

	// Every app's internal gRPC port feeds the name-resolution template, selected or not,
	// so a call to an app outside the subset resolves to where it would run.
	all := make([]App, len(rf.Apps))
	internalPorts := map[string]int{}
	for i, a := range rf.Apps {
		all[i] = a
		if all[i].DaprInternalGRPCPort, err = mapPort(a.AppID, PortDaprInternalGRPC, a.DaprInternalGRPCPort); err != nil {
			return nil, fmt.Errorf("app %q: %w", a.AppID, err)
		}
		internalPorts[a.AppID] = all[i].DaprInternalGRPCPort
	}
	template, err := NameResolutionTemplate(all)
	if err != nil {
		return nil, err
	}

	if err := p.planControlPlane(selected, opts.ControlPlane, mapPort); err != nil {
		return nil, err
	}

	configIndex := map[string]string{} // source config → effective path
	resourceIndex := map[string]int{}  // source resources paths → index in p.resourceSets
	for _, a := range selected {
		eff, err := effectiveApp(a, internalPorts[a.AppID], mapPort, portEnv, opts)
		if err != nil {
			return nil, err
		}
		eff.PlacementHostAddress = p.Placement.Address
		eff.SchedulerHostAddress = p.Scheduler.Address
		eff.RuntimePath = p.CLIRuntimePath

		if eff.ConfigFilePath == "" {
			return nil, fmt.Errorf("app %q: no configFilePath: the name-resolution settings live there", a.AppID)
		}
		cfg, ok := configIndex[eff.ConfigFilePath]
		if !ok {
			cfg = filepath.Join(out, indexedName("config", len(configIndex))+".yaml")
			src, err := os.ReadFile(eff.ConfigFilePath)
			if err != nil {
				return nil, fmt.Errorf("app %q: read config: %w", a.AppID, err)
			}
			data, err := effectiveConfig(src, template, opts.OTLPEndpoint)
			if err != nil {
				return nil, fmt.Errorf("app %q: config %s: %w", a.AppID, eff.ConfigFilePath, err)
			}
			header := fmt.Sprintf("# Generated by pkg/devstack from %s; do not edit.\n", eff.ConfigFilePath)
			p.configs = append(p.configs, configFile{path: cfg, data: append([]byte(header), data...)})
			configIndex[eff.ConfigFilePath] = cfg
		}
		eff.ConfigFilePath = cfg

		key := strings.Join(eff.ResourcesPaths, "\x00")
		i, ok := resourceIndex[key]
		if !ok {
			resources, err := LoadResources(eff.ResourcesPaths...)
			if err != nil {
				return nil, fmt.Errorf("app %q: %w", a.AppID, err)
			}
			if opts.Overlay != "" {
				if resources, err = overlayResources(resources, opts.Overlay); err != nil {
					return nil, err
				}
			}
			i = len(p.resourceSets)
			dir := filepath.Join(out, indexedName("resources", i))
			p.resourceSets = append(p.resourceSets, resourceSet{dir: dir, resources: resources})
			resourceIndex[key] = i
		}
		p.resourceSets[i].appIDs = append(p.resourceSets[i].appIDs, eff.AppID)
		eff.ResourcesPaths = []string{p.resourceSets[i].dir}
		p.Apps = append(p.Apps, eff)
	}

	found := map[string]bool{}
	for _, set := range p.resourceSets {
		for name := range applyMetadataOverrides(set.resources, opts.ComponentMetadata) {
			found[name] = true
		}
		absSecretsFiles(set.resources, p.secretsBaseDir(set))
	}
	for _, name := range sortedKeys(opts.ComponentMetadata) {
		if !found[name] {
			return nil, fmt.Errorf("metadata override for component %q: no such component in the resources paths", name)
		}
	}
	if p.Dependencies, err = p.findDependencies(); err != nil {
		return nil, err
	}
	if err := p.checkPortClashes(); err != nil {
		return nil, err
	}
	return p, nil
}

func selectApps(apps []App, ids []string) ([]App, error) {
	if len(ids) == 0 {
		return apps, nil
	}
	var known []string
	for _, a := range apps {
		known = append(known, a.AppID)
	}
	for _, id := range ids {
		if !slices.Contains(known, id) {
			return nil, fmt.Errorf("app %q is not in the run file (apps: %s)", id, strings.Join(known, ", "))
		}
	}
	var out []App
	for _, a := range apps {
		if slices.Contains(ids, a.AppID) {
			out = append(out, a)
		}
	}
	return out, nil
}

// effectiveApp remaps a's ports (the internal gRPC one is already mapped) and env, and
// fixes the settings the launcher owns.
func effectiveApp(a App, internalPort int, mapPort PortMapper, portEnv []string, opts Options) (App, error) {
	eff := a
	eff.Env = maps.Clone(a.Env)
	if eff.Env == nil {
		eff.Env = map[string]string{}
	}
	eff.ResourcesPaths = slices.Clone(a.ResourcesPaths)
	eff.Command = slices.Clone(a.Command)
	eff.DaprInternalGRPCPort = internalPort
	ports := []struct {
		kind PortKind
		port *int
	}{
		{PortApp, &eff.AppPort},
		{PortDaprHTTP, &eff.DaprHTTPPort},
		{PortDaprGRPC, &eff.DaprGRPCPort},
		{PortMetrics, &eff.MetricsPort},
		{PortProfile, &eff.ProfilePort},
	}
	for _, pt := range ports {
		if *pt.port == 0 && (pt.kind == PortApp || (pt.kind == PortProfile && !eff.EnableProfiling)) {
			continue // an app without a port, or no profiling: nothing to map
		}
		p, err := mapPort(a.AppID, pt.kind, *pt.port)
		if err != nil {
			return App{}, fmt.Errorf("app %q: %s port: %w", a.AppID, pt.kind, err)
		}
		if p <= 0 {
			return App{}, fmt.Errorf("app %q: %s port must be set in the run file", a.AppID, pt.kind)
		}
		*pt.port = p
	}
	for _, name := range portEnv {
		v, ok := eff.Env[name]
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return App{}, fmt.Errorf("app %q: env %s=%q is not a port", a.AppID, name, v)
		}
		p, err := mapPort(a.AppID, EnvPortKind(name), n)
		if err != nil {
			return App{}, fmt.Errorf("app %q: env %s: %w", a.AppID, name, err)
		}
		eff.Env[name] = strconv.Itoa(p)
	}
	for k, v := range opts.Env {
		eff.Env[k] = v
	}
	for k, v := range opts.AppEnv[a.AppID] {
		eff.Env[k] = v
	}

	// Everything binds loopback, whatever the run file says.
	eff.APIListenAddresses = loopback
	if eff.AppChannelAddress == "" {
		eff.AppChannelAddress = loopback
	}
	if eff.UnixDomainSocket != "" {
		return App{}, fmt.Errorf("app %q: unixDomainSocket is not supported by the launcher", a.AppID)
	}
	// The CLI runs command with cwd = appDirPath; an absolute path reads better in errors.
	if len(eff.Command) > 0 && strings.ContainsRune(eff.Command[0], filepath.Separator) && !filepath.IsAbs(eff.Command[0]) {
		eff.Command[0] = filepath.Join(eff.AppDirPath, eff.Command[0])
	}
	return eff, nil
}

func (p *Plan) planControlPlane(apps []App, cp ControlPlanePorts, mapPort PortMapper) error {
	placement, err := sharedAddress(apps, "placementHostAddress", func(a App) string { return a.PlacementHostAddress }, defaultPlacementPort)
	if err != nil {
		return err
	}
	scheduler, err := sharedAddress(apps, "schedulerHostAddress", func(a App) string { return a.SchedulerHostAddress }, defaultSchedulerPort)
	if err != nil {
		return err
	}
	def := DefaultControlPlanePorts()
	orDefault := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	ports := []struct {
		kind PortKind
		in   int
		out  *int
	}{
		{PortPlacement, placement, &p.Placement.Port},
		{PortPlacementRaft, orDefault(cp.PlacementRaft, def.PlacementRaft), &p.Placement.RaftPort},
		{PortPlacementHealthz, orDefault(cp.PlacementHealthz, def.PlacementHealthz), &p.Placement.HealthzPort},
		{PortScheduler, scheduler, &p.Scheduler.Port},
		{PortSchedulerHealthz, orDefault(cp.SchedulerHealthz, def.SchedulerHealthz), &p.Scheduler.HealthzPort},
		{PortSchedulerEtcdClient, orDefault(cp.SchedulerEtcdClient, def.SchedulerEtcdClient), &p.Scheduler.EtcdClientPort},
		{PortSchedulerEtcdPeer, orDefault(cp.SchedulerEtcdPeer, def.SchedulerEtcdPeer), &p.Scheduler.EtcdPeerPort},
	}
	for _, pt := range ports {
		v, err := mapPort("", pt.kind, pt.in)
		if err != nil {
			return fmt.Errorf("%s port: %w", pt.kind, err)
		}
		if v <= 0 {
			return fmt.Errorf("%s port: mapped to %d", pt.kind, v)
		}
		*pt.out = v
	}
	p.Placement.Address = net.JoinHostPort(loopback, strconv.Itoa(p.Placement.Port))
	p.Scheduler.Address = net.JoinHostPort(loopback, strconv.Itoa(p.Scheduler.Port))
	p.Scheduler.DataDir = filepath.Join(p.OutDir, "scheduler", "etcd-"+strconv.Itoa(p.Scheduler.EtcdPeerPort))
	return nil
}

// sharedAddress returns the port of the one loopback control-plane address all apps use.
// The launcher runs one placement and one scheduler on 127.0.0.1, so apps must agree.
func sharedAddress(apps []App, field string, get func(App) string, defPort int) (int, error) {
	port := 0
	for _, a := range apps {
		addr := strings.TrimSpace(get(a))
		if addr == "" {
			addr = "localhost"
		}
		host, portStr, err := net.SplitHostPort(addr)
		if err != nil {
			host, portStr = addr, strconv.Itoa(defPort)
		}
		if host != loopback && host != "localhost" {
			return 0, fmt.Errorf("app %q: %s %q: the launcher runs the control plane on 127.0.0.1 only", a.AppID, field, addr)
		}
		n, err := strconv.Atoi(portStr)
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("app %q: %s %q: bad port", a.AppID, field, addr)
		}
		if port != 0 && n != port {
			return 0, fmt.Errorf("apps disagree on %s (%d and %d): the launcher runs one instance", field, port, n)
		}
		port = n
	}
	return port, nil
}

// checkPortClashes fails when two listeners of the plan would share a port, which a port
// offset or a hand-edited run file can cause; daprd would otherwise die with "address in use".
func (p *Plan) checkPortClashes() error {
	owner := map[int]string{}
	add := func(port int, what string) error {
		if port <= 0 {
			return nil
		}
		if prev, ok := owner[port]; ok {
			return fmt.Errorf("port %d is used by both %s and %s", port, prev, what)
		}
		owner[port] = what
		return nil
	}
	var errs []error
	errs = append(errs,
		add(p.Placement.Port, "placement"),
		add(p.Placement.RaftPort, "placement raft"),
		add(p.Placement.HealthzPort, "placement healthz"),
		add(p.Scheduler.Port, "scheduler"),
		add(p.Scheduler.HealthzPort, "scheduler healthz"),
		add(p.Scheduler.EtcdClientPort, "scheduler etcd client"),
		add(p.Scheduler.EtcdPeerPort, "scheduler etcd peer"),
	)
	for _, a := range p.Apps {
		errs = append(errs,
			add(a.AppPort, a.AppID+" app"),
			add(a.DaprHTTPPort, a.AppID+" dapr HTTP"),
			add(a.DaprGRPCPort, a.AppID+" dapr gRPC"),
			add(a.DaprInternalGRPCPort, a.AppID+" dapr internal gRPC"),
			add(a.MetricsPort, a.AppID+" metrics"),
			add(a.ProfilePort, a.AppID+" profile"),
		)
		for _, name := range p.portEnvVars {
			if n, err := strconv.Atoi(a.Env[name]); err == nil {
				errs = append(errs, add(n, a.AppID+" "+name))
			}
		}
	}
	return errors.Join(errs...)
}

// Write creates OutDir and writes the effective resources, config(s), CLI runtime shim and
// run file, replacing earlier ones.
func (p *Plan) Write() error {
	if err := os.MkdirAll(p.OutDir, 0o755); err != nil {
		return fmt.Errorf("create out dir: %w", err)
	}
	header := "Generated by pkg/devstack; do not edit."
	for _, set := range p.resourceSets {
		if err := writeResources(set.dir, set.resources, header); err != nil {
			return err
		}
	}
	for _, c := range p.configs {
		if err := os.WriteFile(c.path, c.data, 0o644); err != nil {
			return fmt.Errorf("write config: %w", err)
		}
	}
	if err := p.writeCLIRuntime(); err != nil {
		return err
	}
	data, err := p.EffectiveRunFile()
	if err != nil {
		return err
	}
	if err := os.WriteFile(p.RunFilePath, data, 0o644); err != nil {
		return fmt.Errorf("write run file: %w", err)
	}
	return nil
}

// EffectiveRunFile renders the run file for the selected apps: same format as the source,
// every path absolute, every setting merged into the apps.
func (p *Plan) EffectiveRunFile() ([]byte, error) {
	rf := RunFile{Version: p.Source.Version, Name: p.Source.Name, Apps: p.Apps}
	var node yaml.Node
	if err := node.Encode(rf); err != nil {
		return nil, fmt.Errorf("encode run file: %w", err)
	}
	data, err := encodeYAML(&node)
	if err != nil {
		return nil, fmt.Errorf("encode run file: %w", err)
	}
	header := fmt.Sprintf("# Generated by pkg/devstack from %s; do not edit.\n"+
		"# Start placement (%s) and scheduler (%s) first, and export APP_API_TOKEN,\n"+
		"# DAPR_API_TOKEN and DAPR_HOST_IP=127.0.0.1; `go run ./tools/devrun` does all of it.\n",
		p.Source.Path, p.Placement.Address, p.Scheduler.Address)
	return append([]byte(header), data...), nil
}

// writeCLIRuntime writes <CLIRuntimePath>/.dapr/bin/daprd, where the Dapr CLI looks for daprd
// when the run file sets runtimePath. The CLI cannot pass the flags that keep daprd's
// internal gRPC and metrics servers off 0.0.0.0, so this shim adds them.
func (p *Plan) writeCLIRuntime() error {
	bin := filepath.Join(p.CLIRuntimePath, ".dapr", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return fmt.Errorf("create cli runtime: %w", err)
	}
	script := fmt.Sprintf("#!/bin/sh\n# Generated by pkg/devstack: daprd with loopback-only listeners for `dapr run -f`.\n"+
		"exec %s --dapr-internal-grpc-listen-address %s --metrics-listen-address %s \"$@\"\n",
		shellQuote(filepath.Join(p.DaprBinDir, "daprd")), loopback, loopback)
	if err := os.WriteFile(filepath.Join(bin, "daprd"), []byte(script), 0o755); err != nil {
		return fmt.Errorf("write cli runtime: %w", err)
	}
	return nil
}

// appProtocol is the protocol daprd uses to reach the app, as the CLI derives it.
func (a App) appProtocol() string {
	proto := strings.ToLower(a.AppProtocol)
	switch proto {
	case "", "http":
		if a.AppSSL {
			return "https"
		}
		return "http"
	case "grpc":
		if a.AppSSL {
			return "grpcs"
		}
		return "grpc"
	default:
		return proto
	}
}

// DaprdArgs are the flags daprd gets for app a: the ones `dapr run` passes, plus the
// listen-address flags that keep every daprd listener on 127.0.0.1.
func (p *Plan) DaprdArgs(a App) []string {
	args := []string{"--app-id", a.AppID}
	if a.AppPort > 0 {
		args = append(args, "--app-port", strconv.Itoa(a.AppPort))
	}
	args = append(args,
		"--app-protocol", a.appProtocol(),
		"--app-channel-address", a.AppChannelAddress,
		"--dapr-http-port", strconv.Itoa(a.DaprHTTPPort),
		"--dapr-grpc-port", strconv.Itoa(a.DaprGRPCPort),
		"--dapr-internal-grpc-port", strconv.Itoa(a.DaprInternalGRPCPort),
		"--dapr-listen-addresses", loopback,
		"--dapr-internal-grpc-listen-address", loopback,
		"--metrics-port", strconv.Itoa(a.MetricsPort),
		"--metrics-listen-address", loopback,
	)
	for _, r := range a.ResourcesPaths {
		args = append(args, "--resources-path", r)
	}
	args = append(args,
		"--config", a.ConfigFilePath,
		"--placement-host-address", a.PlacementHostAddress,
		"--scheduler-host-address", a.SchedulerHostAddress,
	)
	if a.LogLevel != "" {
		args = append(args, "--log-level", a.LogLevel)
	}
	if a.EnableAppHealthCheck {
		args = append(args, "--enable-app-health-check")
	}
	if a.AppHealthCheckPath != "" {
		args = append(args, "--app-health-check-path", a.AppHealthCheckPath)
	}
	for _, f := range []struct {
		flag string
		v    int
	}{
		{"--app-health-probe-interval", a.AppHealthProbeInterval},
		{"--app-health-probe-timeout", a.AppHealthProbeTimeout},
		{"--app-health-threshold", a.AppHealthThreshold},
		{"--app-max-concurrency", a.AppMaxConcurrency},
	} {
		if f.v > 0 {
			args = append(args, f.flag, strconv.Itoa(f.v))
		}
	}
	if a.MaxBodySize != "" {
		args = append(args, "--max-body-size", a.MaxBodySize)
	}
	if a.ReadBufferSize != "" {
		args = append(args, "--read-buffer-size", a.ReadBufferSize)
	}
	if a.EnableAPILogging {
		args = append(args, "--enable-api-logging")
	}
	if a.EnableProfiling {
		args = append(args, "--enable-profiling", "--profile-port", strconv.Itoa(a.ProfilePort))
	}
	return args
}

// AppEnv is the environment `dapr run` gives app a on top of its own: APP_ID, APP_PORT,
// DAPR_HTTP_PORT, DAPR_GRPC_PORT, DAPR_METRICS_PORT, APP_PROTOCOL, then the app's env
// (which wins). The API tokens are added by the Supervisor.
func (p *Plan) AppEnv(a App) []string {
	env := []string{"APP_ID=" + a.AppID}
	if a.AppPort > 0 {
		env = append(env, "APP_PORT="+strconv.Itoa(a.AppPort))
	}
	env = append(env,
		"DAPR_HTTP_PORT="+strconv.Itoa(a.DaprHTTPPort),
		"DAPR_GRPC_PORT="+strconv.Itoa(a.DaprGRPCPort),
		"DAPR_METRICS_PORT="+strconv.Itoa(a.MetricsPort),
		"APP_PROTOCOL="+a.appProtocol(),
	)
	for _, k := range sortedKeys(a.Env) {
		env = append(env, k+"="+a.Env[k])
	}
	return env
}

// PlacementArgs are the flags of the placement service: loopback listeners, an in-memory
// raft store (actor placement is rebuilt from the sidecars' connections after a restart, and
// a persisted raft log would pin the raft peer address across port changes) and no metrics.
func (p *Plan) PlacementArgs() []string {
	return []string{
		"--id", placementID,
		"--port", strconv.Itoa(p.Placement.Port),
		"--listen-address", loopback,
		"--initial-cluster", placementID + "=" + net.JoinHostPort(loopback, strconv.Itoa(p.Placement.RaftPort)),
		"--inmem-store-enabled=true",
		"--healthz-port", strconv.Itoa(p.Placement.HealthzPort),
		"--healthz-listen-address", loopback,
		"--enable-metrics=false",
		"--log-level", "info",
	}
}

// SchedulerArgs are the flags of the scheduler service: loopback listeners, an embedded etcd
// with fixed client and peer ports and its data under OutDir, and no metrics.
func (p *Plan) SchedulerArgs() []string {
	return []string{
		"--id", schedulerID,
		"--port", strconv.Itoa(p.Scheduler.Port),
		"--listen-address", loopback,
		"--override-broadcast-host-port", p.Scheduler.Address,
		"--healthz-port", strconv.Itoa(p.Scheduler.HealthzPort),
		"--healthz-listen-address", loopback,
		"--enable-metrics=false",
		"--etcd-embed=true",
		"--etcd-data-dir", p.Scheduler.DataDir,
		"--etcd-client-port", strconv.Itoa(p.Scheduler.EtcdClientPort),
		"--etcd-initial-cluster", schedulerID + "=http://" + net.JoinHostPort(loopback, strconv.Itoa(p.Scheduler.EtcdPeerPort)),
		"--log-level", "info",
	}
}

func indexedName(base string, i int) string {
	if i == 0 {
		return base
	}
	return base + "-" + strconv.Itoa(i+1)
}

func defaultDaprBinDir() (string, error) {
	if d := os.Getenv("DAPR_BIN_DIR"); d != "" {
		return filepath.Abs(d)
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("dapr bin dir: %w (set DAPR_BIN_DIR)", err)
	}
	return filepath.Join(home, ".dapr", "bin"), nil
}

// secretsBaseDir is where daprd would resolve a relative secretsFile of set: its working
// directory, which the Dapr CLI (and the supervisor) set to the app's appDirPath. The first
// app loading the set decides; apps are expected to sit at the same depth (apps/<app>).
// Without apps it falls back to the repository root.
func (p *Plan) secretsBaseDir(set resourceSet) string {
	for _, id := range set.appIDs {
		if a, ok := p.App(id); ok && a.AppDirPath != "" {
			return a.AppDirPath
		}
	}
	return p.RepoRoot
}

func findRepoRoot(dir string) string {
	for d := dir; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return filepath.Dir(dir)
		}
		d = parent
	}
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
