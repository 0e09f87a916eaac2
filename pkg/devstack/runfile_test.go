package devstack

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRunFile(t *testing.T) {
	t.Parallel()
	home, err := os.UserHomeDir()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		yaml string
		want []App
	}{
		{
			name: "common fills zero fields and app values win",
			yaml: `
version: 1
common:
  logLevel: info
  appProtocol: http
  enableAppHealthCheck: true
  appHealthProbeInterval: 5
  placementHostAddress: 127.0.0.1:50005
  env: {A: common, B: common}
apps:
  - appID: one
    appDirPath: ./one
    logLevel: debug
    appPort: 8080
    env: {B: app, C: app}
  - appID: two
    appDirPath: ./two
`,
			want: []App{
				{
					AppID: "one", AppDirPath: "/repo/dapr/one", AppPort: 8080,
					SharedConfig: SharedConfig{
						LogLevel: "debug", AppProtocol: "http", EnableAppHealthCheck: true, AppHealthProbeInterval: 5,
						PlacementHostAddress: "127.0.0.1:50005",
						Env:                  map[string]string{"A": "common", "B": "app", "C": "app"},
					},
				},
				{
					AppID: "two", AppDirPath: "/repo/dapr/two",
					SharedConfig: SharedConfig{
						LogLevel: "info", AppProtocol: "http", EnableAppHealthCheck: true, AppHealthProbeInterval: 5,
						PlacementHostAddress: "127.0.0.1:50005",
						Env:                  map[string]string{"A": "common", "B": "common"},
					},
				},
			},
		},
		{
			name: "common paths resolve against the run file, app paths against appDirPath",
			yaml: `
version: 1
common:
  resourcesPaths: ["../components", "."]
  resourcesPath: ./legacy
  configFilePath: ./config.yaml
apps:
  - appID: own
    appDirPath: ../apps/own
    configFilePath: ./cfg.yaml
    resourcesPaths: [./res]
  - appID: shared
    appDirPath: /abs/shared
  - appID: home
    appDirPath: ~/work
`,
			want: []App{
				{
					AppID: "own", AppDirPath: "/repo/apps/own",
					SharedConfig: SharedConfig{
						ConfigFilePath: "/repo/apps/own/cfg.yaml",
						ResourcesPaths: []string{"/repo/apps/own/res"},
						Env:            map[string]string{},
					},
				},
				{
					AppID: "shared", AppDirPath: "/abs/shared",
					SharedConfig: SharedConfig{
						ConfigFilePath: "/repo/dapr/config.yaml",
						ResourcesPaths: []string{"/repo/components", "/repo/dapr", "/repo/dapr/legacy"},
						Env:            map[string]string{},
					},
				},
				{
					AppID: "home", AppDirPath: filepath.Join(home, "work"),
					SharedConfig: SharedConfig{
						ConfigFilePath: "/repo/dapr/config.yaml",
						ResourcesPaths: []string{"/repo/components", "/repo/dapr", "/repo/dapr/legacy"},
						Env:            map[string]string{},
					},
				},
			},
		},
		{
			name: "app id defaults to the base name of appDirPath",
			yaml: `
version: 1
apps:
  - appDirPath: ../apps/orders
    command: ["./orders", "-v"]
`,
			want: []App{{
				AppID: "orders", AppDirPath: "/repo/apps/orders", Command: []string{"./orders", "-v"},
				SharedConfig: SharedConfig{Env: map[string]string{}},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rf, err := ParseRunFile([]byte(tt.yaml), "/repo/dapr/dapr.yaml")
			if err != nil {
				t.Fatalf("ParseRunFile: %v", err)
			}
			if diff := cmp.Diff(tt.want, rf.Apps); diff != "" {
				t.Errorf("apps (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseRunFileErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{"no version", "apps: [{appID: a, appDirPath: .}]", "'version'"},
		{"no apps", "version: 1", "no apps"},
		{"no appDirPath", "version: 1\napps: [{appID: a}]", "'appDirPath'"},
		{"duplicate app id", "version: 1\napps: [{appID: a, appDirPath: .}, {appID: a, appDirPath: ./x}]", "twice"},
		{"unknown field", "version: 1\napps: [{appID: a, appDirPath: ., appHealthCheckPaht: /x}]", "appHealthCheckPaht"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ParseRunFile([]byte(tt.yaml), "/repo/dapr/dapr.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// The Dapr CLI prefers <appDirPath>/.dapr/resources over common's resourcesPaths.
func TestLoadRunFileAppLocalResources(t *testing.T) {
	t.Parallel()
	rf, err := LoadRunFile(filepath.Join("testdata", "unit", "dapr", "dapr.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(filepath.Join("testdata", "unit"))
	got := map[string][]string{}
	for _, a := range rf.Apps {
		got[a.AppID] = a.ResourcesPaths
	}
	want := map[string][]string{
		"alpha": {filepath.Join(abs, "components"), filepath.Join(abs, "dapr")},
		"beta":  {filepath.Join(abs, "apps", "beta", ".dapr", "resources")},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("resources paths (-want +got):\n%s", diff)
	}
}
