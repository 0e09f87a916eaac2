// Package harness starts the platform for integration tests: the apps and their daprd
// sidecars, placement and scheduler as real processes (through pkg/devstack, from the same
// run file developers use), wired to the Redis and RabbitMQ a testinfra.Infra provides, with
// every port free-picked so runs never collide. Each process logs to its own file.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/groupbuy/groupbuy/pkg/devstack"
	"github.com/groupbuy/groupbuy/tests/testinfra"
)

// Options selects what a stack runs.
type Options struct {
	// Apps is a subset of the run file's app ids; empty means all.
	Apps []string
	// Env is added to every app; AppEnv to one app.
	Env    map[string]string
	AppEnv map[string]map[string]string
	// OTLPEndpoint makes apps and sidecars export spans there (http://host:port).
	OTLPEndpoint string
	// Name labels the stack's log directory.
	Name string
	// Components overrides component metadata (component name → metadata name → value) on
	// top of the harness defaults.
	Components map[string]map[string]string
}

// Stack is a running platform.
type Stack struct {
	Infra  *testinfra.Infra
	Plan   *devstack.Plan
	Sup    *devstack.Supervisor
	Redis  *redis.Client // on the run's Redis DB
	LogDir string
	// KeyPrefix isolates the gateway's rate-limit counters of this stack.
	KeyPrefix string
	// Profile is the infrastructure profile the stack runs on.
	Profile string

	pg *pgDatabase // the stack's database in the postgres profile

	mu       sync.Mutex
	replicas map[string]int // app id → replicas started (StartReplica)

	cancel context.CancelFunc
	done   chan error
}

// RepoRoot is the repository root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	buildErr  error
)

// BuildApps builds every app into bin/ once per test binary; the run file's commands point
// there.
func BuildApps() error {
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", "bin/", "./apps/...")
		cmd.Dir = RepoRoot()
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build ./apps/...: %w\n%s", err, out.String())
		}
	})
	return buildErr
}

var stackSeq struct {
	sync.Mutex
	n int
}

// Start brings a stack up and waits until every app is ready. Stop it with Stop.
func Start(ctx context.Context, infra *testinfra.Infra, opts Options) (*Stack, error) {
	for attempt := 1; ; attempt++ {
		s, err := start(ctx, infra, opts)
		// Ports are free when handed out, but another process may bind one before the stack
		// does (CI saw the scheduler fail so): a new start gets new ports.
		if err == nil || attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return s, err
		}
	}
}

func start(ctx context.Context, infra *testinfra.Infra, opts Options) (*Stack, error) {
	if err := BuildApps(); err != nil {
		return nil, err
	}
	stackSeq.Lock()
	stackSeq.n++
	seq := stackSeq.n
	stackSeq.Unlock()
	name := opts.Name
	if name == "" {
		name = "stack"
	}
	logDir := filepath.Join(os.TempDir(), "groupbuy-test-logs", infra.RunID, fmt.Sprintf("%02d-%s", seq, name))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	keyPrefix := fmt.Sprintf("groupbuy-test:%s:%d:", infra.RunID, seq)

	env := map[string]string{
		"LOG_LEVEL":             "info",
		"REDIS_ADDR":            infra.RedisAddr,
		"REDIS_DB":              strconv.Itoa(infra.RedisDB),
		"RATE_LIMIT_KEY_PREFIX": keyPrefix,
		// Cheap password hashes keep hundreds of test registrations fast; production keeps
		// the default cost.
		"PASSWORD_HASH_COST":      "4",
		"OTEL_BSP_SCHEDULE_DELAY": "200",
		// Every test client comes from 127.0.0.1: the per-IP limit would only measure the
		// suite's own speed. TestRateLimits sets real limits on a stack of its own.
		"RATE_LIMIT_IP":         "1000000",
		"RATE_LIMIT_IP_BURST":   "1000000",
		"RATE_LIMIT_USER":       "1000",
		"RATE_LIMIT_USER_BURST": "1000",
		"RATE_LIMIT_REGISTER":   "100000000",
		"PPROF":                 "true", // TestSmokeMetricsAndPprof; off by default
		"PAY_WINDOW":            "2m",
	}
	if opts.OTLPEndpoint != "" {
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = opts.OTLPEndpoint
	}
	for k, v := range opts.Env {
		env[k] = v
	}
	profile, err := Profile()
	if err != nil {
		return nil, err
	}
	redisDB := strconv.Itoa(infra.RedisDB)
	components := map[string]map[string]string{
		"statestore":       {"redisHost": infra.RedisAddr, "redisDB": redisDB},
		"pubsub":           {"connectionString": infra.RabbitURL},
		"pubsub-broadcast": {"connectionString": infra.RabbitURL},
		"order-expiry":     {"schedule": "@every 1s"},
	}
	relays, err := relayPubSubs()
	if err != nil {
		return nil, err
	}
	for _, name := range relays {
		components[name] = map[string]string{"connectionString": infra.RabbitURL}
	}
	var pg *pgDatabase
	if profile == ProfilePostgres {
		var dsn string
		pg, dsn, err = createDatabase(ctx, fmt.Sprintf("%s_%d", infra.RunID, seq))
		if err != nil {
			return nil, err
		}
		components["statestore"] = map[string]string{"connectionString": dsn}
		components["pubsub"] = map[string]string{"redisHost": infra.RedisAddr, "redisDB": redisDB}
		components["pubsub-broadcast"] = map[string]string{"redisHost": infra.RedisAddr, "redisDB": redisDB}
		for _, name := range relays {
			components[name] = map[string]string{"redisHost": infra.RedisAddr, "redisDB": redisDB}
		}
	}
	cleanupPG := func() {
		if pg != nil {
			_ = pg.drop(context.WithoutCancel(ctx))
		}
	}
	for name, md := range opts.Components {
		if components[name] == nil {
			components[name] = map[string]string{}
		}
		for k, v := range md {
			components[name][k] = v
		}
	}
	plan, err := devstack.Materialize(filepath.Join(RepoRoot(), "dapr", "dapr.yaml"), devstack.Options{
		OutDir:            filepath.Join(logDir, "run"),
		Ports:             devstack.FreePorts(),
		Env:               env,
		AppEnv:            opts.AppEnv,
		ComponentMetadata: components,
		OTLPEndpoint:      opts.OTLPEndpoint,
		Apps:              opts.Apps,
		Overlay:           profileOverlay(profile),
	})
	if err != nil {
		cleanupPG()
		return nil, fmt.Errorf("materialize run file: %w", err)
	}
	if err := plan.Write(); err != nil {
		cleanupPG()
		return nil, err
	}
	var filesMu sync.Mutex
	files := map[string]*os.File{}
	sup, err := devstack.NewSupervisor(plan, devstack.SupervisorOptions{
		ReadyTimeout: 90 * time.Second,
		StopGrace:    5 * time.Second,
		Output: func(name string) io.Writer {
			filesMu.Lock()
			defer filesMu.Unlock()
			if f, ok := files[name]; ok {
				return f
			}
			f, err := os.OpenFile(filepath.Join(logDir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return os.Stderr
			}
			files[name] = f
			return f
		},
	})
	if err != nil {
		cleanupPG()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if err := sup.Start(rctx); err != nil {
		cancel()
		_ = sup.Stop()
		cleanupPG()
		return nil, fmt.Errorf("start stack (logs in %s): %w", logDir, err)
	}
	s := &Stack{
		Infra:     infra,
		Plan:      plan,
		Sup:       sup,
		Redis:     redis.NewClient(&redis.Options{Addr: infra.RedisAddr, DB: infra.RedisDB}),
		LogDir:    logDir,
		KeyPrefix: keyPrefix,
		Profile:   profile,
		pg:        pg,
		cancel:    cancel,
		done:      make(chan error, 1),
	}
	go func() { s.done <- sup.Wait(rctx) }()
	return s, nil
}

// Stop ends every process of the stack.
func (s *Stack) Stop() error {
	s.cancel()
	err := s.Sup.Stop()
	_ = s.Redis.Close()
	if s.pg != nil {
		err = errors.Join(err, s.pg.drop(context.Background()))
	}
	return err
}

// App returns the app with the given id as the plan placed it.
func (s *Stack) App(id string) devstack.App {
	a, ok := s.Plan.App(id)
	if !ok {
		panic("harness: no app " + id + " in the stack")
	}
	return a
}

// GatewayURL is the public API base URL.
func (s *Stack) GatewayURL() string { return s.App("gateway").AppURL() + "/api/v1" }

// AdminURL is an app's admin listener (metrics, pprof).
func (s *Stack) AdminURL(id string) string {
	return "http://127.0.0.1:" + s.App(id).Env["ADMIN_PORT"]
}

// StartForTest starts a stack and stops it when the test ends.
func StartForTest(t testing.TB, infra *testinfra.Infra, opts Options) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s, err := Start(ctx, infra, opts)
	if err != nil {
		t.Fatalf("start stack: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Logf("stop stack: %v", err)
		}
		if t.Failed() {
			t.Logf("process logs: %s", s.LogDir)
		}
	})
	return s
}

// State reads the document an app stored under key straight from the store, bypassing the
// apps: Dapr's redis state store keeps "<app-id>||<key>" hashes with the value in field
// "data"; the postgres profile keeps rows of table "state" keyed the same way.
// found is false when the key does not exist.
func (s *Stack) State(ctx context.Context, app, key string, v any) (found bool, err error) {
	if s.pg != nil {
		data, found, err := s.pg.get(ctx, app+"||"+key)
		if err != nil || !found {
			return false, err
		}
		return true, json.Unmarshal(data, v)
	}
	data, err := s.Redis.HGet(ctx, app+"||"+key, "data").Bytes()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(data, v)
}

// StateKeys lists the state keys of an app (without the app prefix).
func (s *Stack) StateKeys(ctx context.Context, app string) ([]string, error) {
	if s.pg != nil {
		keys, err := s.pg.keys(ctx, app+"||")
		for i := range keys {
			keys[i] = strings.TrimPrefix(keys[i], app+"||")
		}
		return keys, err
	}
	var keys []string
	iter := s.Redis.Scan(ctx, 0, app+"||*", 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, strings.TrimPrefix(iter.Val(), app+"||"))
	}
	return keys, iter.Err()
}
