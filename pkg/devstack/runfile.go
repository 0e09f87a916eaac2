package devstack

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// RunFile is a Dapr CLI multi-app run file ("run template"). Field names and yaml tags follow
// github.com/dapr/cli pkg/runfileconfig RunFileConfig, so the files this package writes are
// accepted by `dapr run -f`.
//
// After LoadRunFile, Common and every app's paths are absolute and every app already holds the
// merged common settings (see LoadRunFile).
type RunFile struct {
	Version int          `yaml:"version"`
	Name    string       `yaml:"name,omitempty"`
	Common  SharedConfig `yaml:"common,omitempty"`
	Apps    []App        `yaml:"apps"`

	// Path is the absolute path the file was read from; empty for files never on disk.
	Path string `yaml:"-"`
}

// SharedConfig holds the settings the `common` section shares with every app; it mirrors the
// CLI's standalone.SharedRunConfig. An app's own non-zero value wins over common's, so, as
// with the CLI, an app cannot turn off a boolean that common turns on.
type SharedConfig struct {
	ConfigFilePath         string            `yaml:"configFilePath,omitempty"`
	AppProtocol            string            `yaml:"appProtocol,omitempty"`
	APIListenAddresses     string            `yaml:"apiListenAddresses,omitempty"`
	EnableProfiling        bool              `yaml:"enableProfiling,omitempty"`
	LogLevel               string            `yaml:"logLevel,omitempty"`
	AppMaxConcurrency      int               `yaml:"appMaxConcurrency,omitempty"`
	PlacementHostAddress   string            `yaml:"placementHostAddress,omitempty"`
	SchedulerHostAddress   string            `yaml:"schedulerHostAddress,omitempty"`
	ResourcesPath          string            `yaml:"resourcesPath,omitempty"` // deprecated by the CLI; merged into ResourcesPaths
	ResourcesPaths         []string          `yaml:"resourcesPaths,omitempty"`
	AppSSL                 bool              `yaml:"appSSL,omitempty"`
	MaxBodySize            string            `yaml:"maxBodySize,omitempty"`
	ReadBufferSize         string            `yaml:"readBufferSize,omitempty"`
	EnableAppHealthCheck   bool              `yaml:"enableAppHealthCheck,omitempty"`
	AppHealthCheckPath     string            `yaml:"appHealthCheckPath,omitempty"`
	AppHealthProbeInterval int               `yaml:"appHealthProbeInterval,omitempty"`
	AppHealthProbeTimeout  int               `yaml:"appHealthProbeTimeout,omitempty"`
	AppHealthThreshold     int               `yaml:"appHealthThreshold,omitempty"`
	EnableAPILogging       bool              `yaml:"enableApiLogging,omitempty"`
	RuntimePath            string            `yaml:"runtimePath,omitempty"`
	Env                    map[string]string `yaml:"env,omitempty"`
	DaprdLogDestination    string            `yaml:"daprdLogDestination,omitempty"`
	AppLogDestination      string            `yaml:"appLogDestination,omitempty"`
}

// App is one entry of `apps`; it mirrors the CLI's runfileconfig.App (standalone.RunConfig
// plus the container fields, which this package carries but does not use).
type App struct {
	AppID                string   `yaml:"appID,omitempty"`
	AppDirPath           string   `yaml:"appDirPath"`
	AppChannelAddress    string   `yaml:"appChannelAddress,omitempty"`
	AppPort              int      `yaml:"appPort,omitempty"`
	DaprHTTPPort         int      `yaml:"daprHTTPPort,omitempty"`
	DaprGRPCPort         int      `yaml:"daprGRPCPort,omitempty"`
	DaprInternalGRPCPort int      `yaml:"daprInternalGRPCPort,omitempty"`
	MetricsPort          int      `yaml:"metricsPort,omitempty"`
	ProfilePort          int      `yaml:"profilePort,omitempty"`
	UnixDomainSocket     string   `yaml:"unixDomainSocket,omitempty"`
	Command              []string `yaml:"command,omitempty"`

	ContainerImage           string `yaml:"containerImage,omitempty"`
	ContainerImagePullPolicy string `yaml:"containerImagePullPolicy,omitempty"`
	CreateService            bool   `yaml:"createService,omitempty"`

	SharedConfig `yaml:",inline"`
}

// AppURL is the base URL of the app's own HTTP server.
func (a App) AppURL() string { return fmt.Sprintf("http://%s:%d", loopback, a.AppPort) }

// DaprHTTPURL is the base URL of the app's sidecar HTTP API.
func (a App) DaprHTTPURL() string { return fmt.Sprintf("http://%s:%d", loopback, a.DaprHTTPPort) }

// DaprdName is the name the supervisor gives the app's sidecar process ("<appID>-daprd").
func (a App) DaprdName() string { return a.AppID + "-daprd" }

// App returns the app with the given id.
func (r *RunFile) App(appID string) (App, bool) {
	for _, a := range r.Apps {
		if a.AppID == appID {
			return a, true
		}
	}
	return App{}, false
}

// The CLI's local per-app overrides: <appDirPath>/.dapr/resources and <appDirPath>/.dapr/config.yaml.
const (
	appLocalDaprDir    = ".dapr"
	appLocalResources  = "resources"
	appLocalConfigFile = "config.yaml"
)

// LoadRunFile reads and parses a run file. See ParseRunFile.
func LoadRunFile(path string) (*RunFile, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("run file %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read run file: %w", err)
	}
	return ParseRunFile(data, abs)
}

// ParseRunFile parses run-file YAML as if it were read from path, applying the Dapr CLI's
// rules (github.com/dapr/cli pkg/runfileconfig GetApps):
//   - relative paths in `common` are resolved against the run file's directory; appDirPath
//     too; every other relative path of an app (configFilePath, resourcesPaths, runtimePath)
//     against that app's appDirPath; "~/" against the home directory;
//   - resourcesPath (singular, deprecated) is appended to resourcesPaths;
//   - each zero-valued shared field of an app takes common's value; env maps are merged with
//     the app's entries winning;
//   - resources: the app's own resourcesPaths, else <appDirPath>/.dapr/resources when it
//     exists, else common's; config: the app's own, else <appDirPath>/.dapr/config.yaml when
//     it exists, else common's;
//   - an app without appID takes the base name of its appDirPath.
//
// Unlike the CLI it does not require paths to exist (apps may not be built yet), and it
// rejects unknown fields so that a typo does not silently drop a setting.
func ParseRunFile(data []byte, path string) (*RunFile, error) {
	var rf RunFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		return nil, fmt.Errorf("parse run file %s: %w", path, err)
	}
	rf.Path = path
	if rf.Version == 0 {
		return nil, fmt.Errorf("run file %s: required field 'version' not found", path)
	}
	if len(rf.Apps) == 0 {
		return nil, fmt.Errorf("run file %s: no apps", path)
	}
	baseDir := filepath.Dir(path)

	if err := resolveShared(&rf.Common, baseDir); err != nil {
		return nil, fmt.Errorf("run file %s: common: %w", path, err)
	}
	seen := map[string]bool{}
	for i := range rf.Apps {
		app := &rf.Apps[i]
		if app.AppDirPath == "" {
			return nil, fmt.Errorf("run file %s: app %d: required field 'appDirPath' not found", path, i)
		}
		dir, err := resolvePath(baseDir, app.AppDirPath)
		if err != nil {
			return nil, fmt.Errorf("run file %s: app %d: %w", path, i, err)
		}
		app.AppDirPath = dir
		if app.AppID == "" {
			app.AppID = filepath.Base(dir)
		}
		if seen[app.AppID] {
			return nil, fmt.Errorf("run file %s: app id %q appears twice", path, app.AppID)
		}
		seen[app.AppID] = true
		if err := resolveShared(&app.SharedConfig, dir); err != nil {
			return nil, fmt.Errorf("run file %s: app %q: %w", path, app.AppID, err)
		}
		resolveAppLocalDefaults(app)
		mergeShared(&app.SharedConfig, rf.Common)
	}
	return &rf, nil
}

// resolveShared makes the paths of s absolute against baseDir and folds the deprecated
// singular resourcesPath into resourcesPaths.
func resolveShared(s *SharedConfig, baseDir string) error {
	for _, p := range []*string{&s.ConfigFilePath, &s.ResourcesPath, &s.RuntimePath} {
		if *p == "" {
			continue
		}
		abs, err := resolvePath(baseDir, *p)
		if err != nil {
			return err
		}
		*p = abs
	}
	for i, p := range s.ResourcesPaths {
		abs, err := resolvePath(baseDir, p)
		if err != nil {
			return err
		}
		s.ResourcesPaths[i] = abs
	}
	if strings.TrimSpace(s.ResourcesPath) != "" {
		s.ResourcesPaths = append(s.ResourcesPaths, s.ResourcesPath)
		s.ResourcesPath = ""
	}
	return nil
}

// resolveAppLocalDefaults applies the CLI's precedence for an app without its own resources
// or config: <appDirPath>/.dapr/resources and <appDirPath>/.dapr/config.yaml win over common.
func resolveAppLocalDefaults(app *App) {
	if len(app.ResourcesPaths) == 0 {
		local := filepath.Join(app.AppDirPath, appLocalDaprDir, appLocalResources)
		if st, err := os.Stat(local); err == nil && st.IsDir() {
			app.ResourcesPaths = []string{local}
		}
	}
	if app.ConfigFilePath == "" {
		local := filepath.Join(app.AppDirPath, appLocalDaprDir, appLocalConfigFile)
		if st, err := os.Stat(local); err == nil && !st.IsDir() {
			app.ConfigFilePath = local
		}
	}
}

// mergeShared copies every zero-valued field of dst from common, like the CLI's
// mergeCommonAndAppsSharedRunConfig, then merges env with dst's entries winning. Slices and
// maps are copied so apps never alias common.
func mergeShared(dst *SharedConfig, common SharedConfig) {
	env := dst.Env
	dv := reflect.ValueOf(dst).Elem()
	cv := reflect.ValueOf(common)
	for i := range dv.NumField() {
		if dv.Field(i).IsZero() {
			dv.Field(i).Set(cv.Field(i))
		}
	}
	dst.ResourcesPaths = append([]string(nil), dst.ResourcesPaths...)
	merged := make(map[string]string, len(common.Env)+len(env))
	for k, v := range common.Env {
		merged[k] = v
	}
	for k, v := range env {
		merged[k] = v
	}
	dst.Env = merged
}

// resolvePath expands "~/" and makes p absolute against baseDir.
func resolvePath(baseDir, p string) (string, error) {
	if p == "~" || strings.HasPrefix(p, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("resolve %q: %w", p, err)
		}
		p = filepath.Join(home, strings.TrimPrefix(p, "~"))
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	if baseDir == "" {
		return "", errors.New("relative path " + p + " without a base directory")
	}
	return filepath.Join(baseDir, p), nil
}
