package devstack

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const fixtureRunFile = "testdata/unit/dapr/dapr.yaml"

func fixturePlan(t *testing.T, opts Options) *Plan {
	t.Helper()
	rf, err := LoadRunFile(fixtureRunFile)
	if err != nil {
		t.Fatal(err)
	}
	if opts.OutDir == "" {
		opts.OutDir = t.TempDir()
	}
	if opts.DaprBinDir == "" {
		opts.DaprBinDir = "/opt/dapr/bin"
	}
	p, err := NewPlan(rf, opts)
	if err != nil {
		t.Fatalf("NewPlan: %v", err)
	}
	return p
}

func fixtureDir(t *testing.T) string {
	t.Helper()
	abs, err := filepath.Abs("testdata/unit")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func TestPlanRemapsPorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ports PortMapper
		// alpha's app, http, grpc, internal, metrics ports and ADMIN_PORT; placement, scheduler.
		want []int
	}{
		{"run file ports", nil, []int{8080, 3500, 50100, 50200, 9090, 9190, 50005, 50006}},
		{"offset", OffsetPorts(1000), []int{9080, 4500, 51100, 51200, 10090, 10190, 51005, 51006}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := fixturePlan(t, Options{Ports: tt.ports})
			a, _ := p.App("alpha")
			got := []int{a.AppPort, a.DaprHTTPPort, a.DaprGRPCPort, a.DaprInternalGRPCPort, a.MetricsPort,
				atoi(t, a.Env["ADMIN_PORT"]), p.Placement.Port, p.Scheduler.Port}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
			if a.PlacementHostAddress != p.Placement.Address || a.SchedulerHostAddress != p.Scheduler.Address {
				t.Errorf("app control-plane addresses %s, %s; plan has %s, %s",
					a.PlacementHostAddress, a.SchedulerHostAddress, p.Placement.Address, p.Scheduler.Address)
			}
		})
	}
}

func TestPlanEnvPrecedence(t *testing.T) {
	t.Parallel()
	p := fixturePlan(t, Options{
		Ports:  OffsetPorts(1),
		Env:    map[string]string{"EXTRA": "all", "LISTEN_HOST": "overridden"},
		AppEnv: map[string]map[string]string{"beta": {"ADMIN_PORT": "7000", "EXTRA": "beta"}},
	})
	got := map[string]map[string]string{}
	for _, a := range p.Apps {
		got[a.AppID] = a.Env
	}
	want := map[string]map[string]string{
		// alpha: run-file ADMIN_PORT remapped, its own LOG_LEVEL over common's, Options.Env over both.
		"alpha": {"ADMIN_PORT": "9191", "LOG_LEVEL": "debug", "LISTEN_HOST": "overridden", "EXTRA": "all"},
		// beta: an ADMIN_PORT given through AppEnv is taken as it is.
		"beta": {"ADMIN_PORT": "7000", "LOG_LEVEL": "info", "LISTEN_HOST": "overridden", "EXTRA": "beta"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
}

func TestPlanSubsetKeepsEveryAppInTemplate(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	p := fixturePlan(t, Options{OutDir: out, Ports: OffsetPorts(1000), Apps: []string{"beta"}})
	if len(p.Apps) != 1 || p.Apps[0].AppID != "beta" {
		t.Fatalf("apps = %v, want only beta", p.Apps)
	}
	if err := p.Write(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadNameResolutionTemplate(filepath.Join(out, "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{{if eq .ID "alpha"}}127.0.0.1:51200{{else if eq .ID "beta"}}127.0.0.1:51201{{else}}unknown-app-{{.ID}}.invalid:1{{end}}`
	if got != want {
		t.Errorf("template\n got %s\nwant %s", got, want)
	}
}

func TestPlanErrors(t *testing.T) {
	t.Parallel()
	samePort := func(string, PortKind, int) (int, error) { return 4000, nil }
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"unknown app", Options{Apps: []string{"gamma"}}, `app "gamma" is not in the run file`},
		{"override of a missing component", Options{ComponentMetadata: map[string]map[string]string{"nope": {"a": "b"}}}, `component "nope"`},
		{"port clash", Options{Ports: samePort}, "port 4000 is used by both"},
		{"offset out of range", Options{Ports: OffsetPorts(30000)}, "out of range"},
		{"out dir is the run file's dir", Options{OutDir: "testdata/unit/dapr"}, "directory of its own"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rf, err := LoadRunFile(fixtureRunFile)
			if err != nil {
				t.Fatal(err)
			}
			if tt.opts.OutDir == "" {
				tt.opts.OutDir = t.TempDir()
			}
			_, err = NewPlan(rf, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPlanRejectsRemoteControlPlane(t *testing.T) {
	t.Parallel()
	rf, err := ParseRunFile([]byte(`
version: 1
common:
  placementHostAddress: 10.0.0.5:50005
apps:
  - appID: a
    appDirPath: .
    daprHTTPPort: 1
    daprGRPCPort: 2
    daprInternalGRPCPort: 3
    metricsPort: 4
`), "/repo/dapr/dapr.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewPlan(rf, Options{OutDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1 only") {
		t.Errorf("error = %v, want the control plane to be refused", err)
	}
}

func TestDaprdArgsAndAppEnv(t *testing.T) {
	t.Parallel()
	p := fixturePlan(t, Options{Ports: OffsetPorts(1000)})
	a, _ := p.App("alpha")
	out := p.OutDir
	wantArgs := []string{
		"--app-id", "alpha",
		"--app-port", "9080",
		"--app-protocol", "http",
		"--app-channel-address", "127.0.0.1",
		"--dapr-http-port", "4500",
		"--dapr-grpc-port", "51100",
		"--dapr-internal-grpc-port", "51200",
		"--dapr-listen-addresses", "127.0.0.1",
		"--dapr-internal-grpc-listen-address", "127.0.0.1",
		"--metrics-port", "10090",
		"--metrics-listen-address", "127.0.0.1",
		"--resources-path", filepath.Join(out, "resources"),
		"--config", filepath.Join(out, "config.yaml"),
		"--placement-host-address", "127.0.0.1:51005",
		"--scheduler-host-address", "127.0.0.1:51006",
		"--log-level", "debug",
		"--enable-app-health-check",
		"--app-health-check-path", "/healthz",
		"--app-health-probe-interval", "5",
	}
	if diff := cmp.Diff(wantArgs, p.DaprdArgs(a)); diff != "" {
		t.Errorf("daprd args (-want +got):\n%s", diff)
	}
	wantEnv := []string{
		"APP_ID=alpha", "APP_PORT=9080", "DAPR_HTTP_PORT=4500", "DAPR_GRPC_PORT=51100", "DAPR_METRICS_PORT=10090",
		"APP_PROTOCOL=http", "ADMIN_PORT=10190", "LISTEN_HOST=127.0.0.1", "LOG_LEVEL=debug",
	}
	if diff := cmp.Diff(wantEnv, p.AppEnv(a)); diff != "" {
		t.Errorf("app env (-want +got):\n%s", diff)
	}
	if got, want := a.Command, []string{filepath.Join(fixtureDir(t), "bin", "alpha"), "--flag"}; !cmp.Equal(got, want) {
		t.Errorf("command = %v, want %v", got, want)
	}
}

func TestControlPlaneArgs(t *testing.T) {
	t.Parallel()
	p := fixturePlan(t, Options{Ports: OffsetPorts(1000)})
	wantPlacement := []string{
		"--id", "dapr-placement-0",
		"--port", "51005",
		"--listen-address", "127.0.0.1",
		"--initial-cluster", "dapr-placement-0=127.0.0.1:51010",
		"--inmem-store-enabled=true",
		"--healthz-port", "51011",
		"--healthz-listen-address", "127.0.0.1",
		"--enable-metrics=false",
		"--log-level", "info",
	}
	if diff := cmp.Diff(wantPlacement, p.PlacementArgs()); diff != "" {
		t.Errorf("placement args (-want +got):\n%s", diff)
	}
	wantScheduler := []string{
		"--id", "dapr-scheduler-server-0",
		"--port", "51006",
		"--listen-address", "127.0.0.1",
		"--override-broadcast-host-port", "127.0.0.1:51006",
		"--healthz-port", "51012",
		"--healthz-listen-address", "127.0.0.1",
		"--enable-metrics=false",
		"--etcd-embed=true",
		"--etcd-data-dir", filepath.Join(p.OutDir, "scheduler", "etcd-51014"),
		"--etcd-client-port", "51013",
		"--etcd-initial-cluster", "dapr-scheduler-server-0=http://127.0.0.1:51014",
		"--log-level", "info",
	}
	if diff := cmp.Diff(wantScheduler, p.SchedulerArgs()); diff != "" {
		t.Errorf("scheduler args (-want +got):\n%s", diff)
	}
}

func TestWriteProducesFilesTheCLIAccepts(t *testing.T) {
	t.Parallel()
	out := t.TempDir()
	p := fixturePlan(t, Options{OutDir: out, Ports: OffsetPorts(1000)})
	if err := p.Write(); err != nil {
		t.Fatal(err)
	}
	var files []string
	err := filepath.WalkDir(out, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(out, path)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := []string{
		"cli-runtime/.dapr/bin/daprd",
		"config.yaml",
		"dapr.yaml",
		"resources/component-pubsub.yaml",
		"resources/component-secretstore.yaml",
		"resources/component-statestore.yaml",
		"resources/resiliency-fixture.yaml",
		"resources/subscription-orders.yaml",
		"resources-2/component-localstore.yaml",
	}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}

	// The effective run file parses back into the plan's apps: absolute paths, nothing left in common.
	rf, err := LoadRunFile(p.RunFilePath)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p.Apps, rf.Apps); diff != "" {
		t.Errorf("effective run file apps (-plan +file):\n%s", diff)
	}
	beta, _ := p.App("beta")
	if got, want := beta.ResourcesPaths, []string{filepath.Join(out, "resources-2")}; !cmp.Equal(got, want) {
		t.Errorf("beta resources = %v, want %v", got, want)
	}

	shim, err := os.ReadFile(filepath.Join(out, "cli-runtime", ".dapr", "bin", "daprd"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "exec '/opt/dapr/bin/daprd' --dapr-internal-grpc-listen-address 127.0.0.1 --metrics-listen-address 127.0.0.1 \"$@\""; !strings.Contains(string(shim), want) {
		t.Errorf("daprd shim:\n%s\nwant a line %s", shim, want)
	}
}

func TestPlanDependencies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		apps []string
		want []Dependency
	}{
		{
			// pubsub is scoped to beta, and beta loads its own .dapr/resources: nobody needs RabbitMQ.
			name: "all apps",
			want: []Dependency{{Kind: DependencyRedis, Addr: "127.0.0.1:6379", Display: "127.0.0.1:6379", Components: []string{"statestore"}}},
		},
		{
			name: "beta only uses an in-memory store",
			apps: []string{"beta"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := fixturePlan(t, Options{Apps: tt.apps})
			if diff := cmp.Diff(tt.want, p.Dependencies); diff != "" {
				t.Errorf("dependencies (-want +got):\n%s", diff)
			}
		})
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
