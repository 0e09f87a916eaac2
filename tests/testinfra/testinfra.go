// Package testinfra gives integration tests their own Redis database and RabbitMQ virtual host
// and takes them away again, so parallel test runs against shared services never see each
// other's keys, queues or messages.
//
// Two modes, chosen by Options.Mode, else the GROUPBUY_TEST_INFRA environment variable
// ("local", "testcontainers"), else automatically (testcontainers when a Docker daemon answers):
//
//   - local: uses the Redis and RabbitMQ already running on this machine
//     (GROUPBUY_TEST_REDIS_ADDR, default 127.0.0.1:6379; GROUPBUY_TEST_RABBITMQ_URL, default
//     amqp://guest:guest@127.0.0.1:5672/). Each run claims a free Redis DB 1..15 through a lock
//     key in DB 0 and creates a RabbitMQ vhost named groupbuy-test-<run id>, through the
//     management API when it answers (GROUPBUY_TEST_RABBITMQ_MANAGEMENT_URL, default
//     http://<amqp host>:15672) and through rabbitmqctl otherwise.
//   - testcontainers: starts redis:7.0 and rabbitmq:3.10-management from local images (never
//     pulled; build stand-ins with scripts/standin-images.sh) with ports published on 127.0.0.1.
//     TESTCONTAINERS_RYUK_DISABLED=true and TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 are set for
//     the process when unset, as this machine needs them; without Ryuk, Close (or Sweep after a
//     crash) removes the containers.
//
// Leftovers of crashed runs: a Redis claim expires by itself (Options.LockTTL after the last
// refresh) and the next claimer flushes the DB before use; vhosts and containers stay until
// Sweep removes them (go run ./tests/testinfra/cmd/testinfra-sweep).
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode says where the infrastructure of a run lives.
type Mode string

// Modes accepted by Options.Mode and GROUPBUY_TEST_INFRA.
const (
	ModeLocal          Mode = "local"
	ModeTestcontainers Mode = "testcontainers"
)

// Environment variables read by Provision for fields left empty in Options.
const (
	EnvMode             = "GROUPBUY_TEST_INFRA"
	EnvRedisAddr        = "GROUPBUY_TEST_REDIS_ADDR"
	EnvRabbitURL        = "GROUPBUY_TEST_RABBITMQ_URL"
	EnvRabbitManagement = "GROUPBUY_TEST_RABBITMQ_MANAGEMENT_URL"
)

const (
	defaultRedisAddr   = "127.0.0.1:6379"
	defaultRabbitURL   = "amqp://guest:guest@127.0.0.1:5672/"
	defaultRedisImage  = "redis:7.0"
	defaultRabbitImage = "rabbitmq:3.10-management"
	defaultLockTTL     = 10 * time.Minute
	minLockTTL         = 3 * time.Second

	// vhostPrefix starts every vhost this package creates; Sweep deletes nothing else.
	vhostPrefix = "groupbuy-test-"
)

// Options tunes Provision. The zero value is ready to use: empty fields come from the
// environment, then from the defaults.
type Options struct {
	// Mode forces a mode; empty means GROUPBUY_TEST_INFRA, then auto-detection.
	Mode Mode

	// RedisAddr, RabbitURL and RabbitManagementURL locate the services of local mode.
	RedisAddr           string
	RabbitURL           string
	RabbitManagementURL string

	// RedisImage and RabbitImage name the local images of testcontainers mode.
	RedisImage  string
	RabbitImage string

	// LockTTL is how long a Redis DB claim outlives its last refresh; the claim is refreshed
	// every LockTTL/3 while the Infra is open, so it only expires after a crash. Default 10m,
	// at least 3s.
	LockTTL time.Duration

	// Logf receives progress messages (testcontainers output included); nil discards them.
	Logf func(format string, args ...any)
}

// Infra is the infrastructure of one run. Its fields are what a test hands to the code under
// test (Dapr component metadata, clients); Close gives everything back.
type Infra struct {
	Mode  Mode
	RunID string

	// RedisAddr is host:port; RedisDB the database index the run owns (0 in testcontainers
	// mode, where the whole server is the run's).
	RedisAddr string
	RedisDB   int

	// RabbitURL is an amqp:// URL including credentials and the run's vhost.
	RabbitURL string

	// closers undo provisioning steps; Close runs them in reverse order.
	closers []closer
	// containerIDs lets tests check that testcontainers mode removed its containers;
	// rabbitManagementURL lets them drive the container's management API.
	containerIDs        []string
	rabbitManagementURL string
	// vhost and lockKey let tests check that local mode cleaned up.
	vhost   string
	lockKey string

	closeOnce sync.Once
	closeErr  error
}

type closer struct {
	what string
	fn   func(ctx context.Context) error
}

// Provision creates the infrastructure of one run. On error nothing is left behind.
func Provision(ctx context.Context, opts Options) (*Infra, error) {
	opts = opts.withDefaults()
	mode, err := resolveMode(ctx, opts)
	if err != nil {
		return nil, err
	}
	runID, err := newRunID(time.Now())
	if err != nil {
		return nil, err
	}

	inf := &Infra{Mode: mode, RunID: runID}
	switch mode {
	case ModeLocal:
		err = provisionLocal(ctx, opts, inf)
	case ModeTestcontainers:
		err = provisionContainers(ctx, opts, inf)
	}
	if err != nil {
		// Undo with a fresh context: ctx may be what expired.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if cerr := inf.Close(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up after failed provisioning: %w", cerr))
		}
		return nil, fmt.Errorf("testinfra: provision %s mode: %w", mode, err)
	}
	opts.logf("testinfra: run %s (%s): redis %s db %d, rabbitmq %s", runID, mode, inf.RedisAddr, inf.RedisDB, redactURL(inf.RabbitURL))
	return inf, nil
}

// New provisions for a test, fails it with the reason when that is impossible, and closes the
// infrastructure when the test and its subtests are done.
func New(tb testing.TB) *Infra {
	tb.Helper()
	return NewWithOptions(tb, Options{})
}

// NewWithOptions is New with explicit Options; Logf defaults to tb.Logf.
func NewWithOptions(tb testing.TB, opts Options) *Infra {
	tb.Helper()
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	ctx, cancel := context.WithTimeout(tb.Context(), 3*time.Minute)
	defer cancel()
	inf, err := Provision(ctx, opts)
	if err != nil {
		tb.Fatalf("%v\n(choose the mode with %s=local|testcontainers; see the tests/testinfra package doc)", err, EnvMode)
	}
	tb.Cleanup(func() {
		// tb.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := inf.Close(ctx); err != nil {
			tb.Errorf("testinfra: close run %s: %v", inf.RunID, err)
		}
	})
	return inf
}

// Close removes everything Provision created, in reverse order, and reports every failure.
// Calling it again returns the first call's result.
func (i *Infra) Close(ctx context.Context) error {
	i.closeOnce.Do(func() {
		var errs []error
		for _, c := range slices.Backward(i.closers) {
			if err := c.fn(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.what, err))
			}
		}
		i.closeErr = errors.Join(errs...)
	})
	return i.closeErr
}

func (i *Infra) onClose(what string, fn func(ctx context.Context) error) {
	i.closers = append(i.closers, closer{what: what, fn: fn})
}

func (o Options) withDefaults() Options {
	o.Mode = Mode(firstNonEmpty(string(o.Mode), os.Getenv(EnvMode)))
	o.RedisAddr = firstNonEmpty(o.RedisAddr, os.Getenv(EnvRedisAddr), defaultRedisAddr)
	o.RabbitURL = firstNonEmpty(o.RabbitURL, os.Getenv(EnvRabbitURL), defaultRabbitURL)
	o.RabbitManagementURL = firstNonEmpty(o.RabbitManagementURL, os.Getenv(EnvRabbitManagement))
	o.RedisImage = firstNonEmpty(o.RedisImage, defaultRedisImage)
	o.RabbitImage = firstNonEmpty(o.RabbitImage, defaultRabbitImage)
	switch {
	case o.LockTTL <= 0:
		o.LockTTL = defaultLockTTL
	case o.LockTTL < minLockTTL:
		o.LockTTL = minLockTTL
	}
	return o
}

func (o Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func resolveMode(ctx context.Context, opts Options) (Mode, error) {
	switch opts.Mode {
	case ModeLocal:
		return ModeLocal, nil
	case ModeTestcontainers:
		return ModeTestcontainers, nil
	case "":
	default:
		return "", fmt.Errorf("testinfra: unknown mode %q (from %s or Options.Mode): want %q, %q or empty for auto", opts.Mode, EnvMode, ModeLocal, ModeTestcontainers)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pingDocker(pctx); err != nil {
		opts.logf("testinfra: no Docker daemon answers (%v); using local mode", err)
		return ModeLocal, nil
	}
	return ModeTestcontainers, nil
}

// newRunID returns "<unix seconds>-<8 hex digits>". The timestamp lets Sweep age leftovers
// without asking the broker, which keeps no creation time for vhosts.
func newRunID(now time.Time) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("testinfra: run id: %w", err)
	}
	return strconv.FormatInt(now.Unix(), 10) + "-" + hex.EncodeToString(b[:]), nil
}

// runStarted parses the time out of a run id made by newRunID.
func runStarted(runID string) (time.Time, bool) {
	secs, rnd, ok := strings.Cut(runID, "-")
	if !ok || len(rnd) != 8 {
		return time.Time{}, false
	}
	if _, err := hex.DecodeString(rnd); err != nil {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(secs, 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

func firstNonEmpty(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}
