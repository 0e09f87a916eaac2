package testinfra

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
)

var modes = []Mode{ModeLocal, ModeTestcontainers}

// requireMode skips testcontainers mode only when no Docker daemon answers; anything else that
// stands in the way (missing images, say) fails the test in Provision.
func requireMode(t *testing.T, mode Mode) {
	t.Helper()
	if mode != ModeTestcontainers {
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := pingDocker(ctx); err != nil {
		t.Skipf("testcontainers mode skipped: no Docker daemon answers (%v); start one, e.g. sudo scripts/standin-images.sh", err)
	}
}

func TestProvision(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			requireMode(t, mode)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()

			start := time.Now()
			inf, err := Provision(ctx, Options{Mode: mode, Logf: t.Logf})
			if err != nil {
				t.Fatal(err)
			}
			provisioned := time.Since(start)
			t.Cleanup(func() { _ = inf.Close(context.Background()) }) // if the test stops early
			if inf.Mode != mode {
				t.Errorf("Mode = %q, want %q", inf.Mode, mode)
			}

			key := "testinfra:probe:" + inf.RunID
			writeRedis(ctx, t, inf, key, inf.RunID)
			roundTripAMQP(ctx, t, inf.RabbitURL, "hello "+inf.RunID)
			if mode == ModeLocal {
				assertClaimed(ctx, t, inf)
			}

			start = time.Now()
			if err := inf.Close(ctx); err != nil {
				t.Fatalf("Close: %v", err)
			}
			t.Logf("%s mode: provision %s, close %s", mode, provisioned.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
			if err := inf.Close(ctx); err != nil {
				t.Errorf("second Close: %v, want nil", err)
			}
			assertReleased(ctx, t, inf, key)
		})
	}
}

func TestProvisionParallelRunsAreIsolated(t *testing.T) {
	t.Parallel()
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			requireMode(t, mode)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
			defer cancel()

			var (
				wg   sync.WaitGroup
				infs [2]*Infra
				errs [2]error
			)
			for i := range infs {
				wg.Go(func() { infs[i], errs[i] = Provision(ctx, Options{Mode: mode, Logf: t.Logf}) })
			}
			wg.Wait()
			for i := range infs {
				if infs[i] != nil {
					t.Cleanup(func() { _ = infs[i].Close(context.Background()) })
				}
			}
			if err := errors.Join(errs[:]...); err != nil {
				t.Fatal(err)
			}

			a, b := infs[0], infs[1]
			if a.RunID == b.RunID {
				t.Errorf("both runs have id %s", a.RunID)
			}
			if a.RedisAddr == b.RedisAddr && a.RedisDB == b.RedisDB {
				t.Errorf("both runs got redis %s db %d", a.RedisAddr, a.RedisDB)
			}
			if a.RabbitURL == b.RabbitURL {
				t.Errorf("both runs got rabbitmq %s", redactURL(a.RabbitURL))
			}
			// Same key and queue names in both runs: each sees only its own.
			for _, inf := range infs {
				writeRedis(ctx, t, inf, "testinfra:shared-name", inf.RunID)
			}
			for _, inf := range infs {
				if got := readRedis(ctx, t, inf, "testinfra:shared-name"); got != inf.RunID {
					t.Errorf("run %s reads %q, want its own %q", inf.RunID, got, inf.RunID)
				}
				roundTripAMQP(ctx, t, inf.RabbitURL, "hello "+inf.RunID)
			}

			for _, inf := range infs {
				if err := inf.Close(ctx); err != nil {
					t.Errorf("Close run %s: %v", inf.RunID, err)
				}
				assertReleased(ctx, t, inf, "testinfra:shared-name")
			}
		})
	}
}

// The machine's broker has no management plugin, so local mode normally falls back to
// rabbitmqctl; the containers' broker has it. Running local mode against the containers covers
// the management API path for real.
func TestLocalModeViaManagementAPI(t *testing.T) {
	t.Parallel()
	requireMode(t, ModeTestcontainers)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	services := NewWithOptions(t, Options{Mode: ModeTestcontainers})

	inf, err := Provision(ctx, Options{
		Mode:                ModeLocal,
		RedisAddr:           services.RedisAddr,
		RabbitURL:           services.RabbitURL,
		RabbitManagementURL: services.rabbitManagementURL,
		Logf:                t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = inf.Close(context.Background()) })
	roundTripAMQP(ctx, t, inf.RabbitURL, "hello "+inf.RunID)

	admins, _, err := brokerAdmins(services.RabbitURL, services.rabbitManagementURL)
	if err != nil {
		t.Fatal(err)
	}
	mgmt := admins[0]
	if names, err := mgmt.list(ctx); err != nil || !slices.Contains(names, inf.vhost) {
		t.Errorf("%s lists %v, %v; want %s among them", mgmt, names, err, inf.vhost)
	}
	if vhostExists(ctx, t, inf.vhost) {
		t.Errorf("vhost %s was created on the machine's broker, not the container's", inf.vhost)
	}

	if err := inf.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if names, err := mgmt.list(ctx); err != nil || slices.Contains(names, inf.vhost) {
		t.Errorf("%s lists %v, %v after Close; want %s gone", mgmt, names, err, inf.vhost)
	}
}

// A run whose claim was taken over (it stalled past the TTL) must leave the other run's DB and
// lock alone.
func TestCloseLeavesALostClaimAlone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	inf, err := Provision(ctx, Options{Mode: ModeLocal, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups, not defers: the cleanup below still needs the clients.
	lock := redis.NewClient(redisOptions(inf.RedisAddr, 0))
	t.Cleanup(func() { _ = lock.Close() })
	data := redis.NewClient(redisOptions(inf.RedisAddr, inf.RedisDB))
	t.Cleanup(func() { _ = data.Close() })

	thief := "thief-" + inf.RunID
	t.Cleanup(func() {
		// Play the other run's part: it flushes and releases its DB at its own close.
		ctx := context.Background()
		_ = data.Del(ctx, "thief:data").Err()
		_ = releaseScript.Run(ctx, lock, []string{inf.lockKey}, thief).Err()
	})
	if err := lock.Set(ctx, inf.lockKey, thief, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := data.Set(ctx, "thief:data", "keep me", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	err = inf.Close(ctx)
	if !errors.Is(err, errClaimLost) {
		t.Errorf("Close = %v, want %v", err, errClaimLost)
	}
	if got, _ := lock.Get(ctx, inf.lockKey).Result(); got != thief {
		t.Errorf("lock %s = %q after Close, want the other run's %q", inf.lockKey, got, thief)
	}
	if got, _ := data.Get(ctx, "thief:data").Result(); got != "keep me" {
		t.Errorf("other run's key = %q after Close, want it kept", got)
	}
	if vhostExists(ctx, t, inf.vhost) {
		t.Errorf("vhost %s still exists: the lost claim must not stop the other cleanups", inf.vhost)
	}
}

func TestSweep(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	o := Options{}.withDefaults()
	admins, uri, err := brokerAdmins(o.RabbitURL, o.RabbitManagementURL)
	if err != nil {
		t.Fatal(err)
	}

	// A leftover from a run two days ago, and a live run.
	oldRun := strconv.FormatInt(time.Now().Add(-48*time.Hour).Unix(), 10) + "-deadbeef"
	oldVhost := vhostPrefix + oldRun
	admin, err := createVhost(ctx, admins, oldVhost, uri.Username)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.delete(context.Background(), oldVhost) })
	live := NewWithOptions(t, Options{Mode: ModeLocal})

	var oldContainer string
	if pingDocker(ctx) == nil {
		cli, err := dockerClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.Close() })
		created, err := cli.ContainerCreate(ctx, &container.Config{Image: defaultRedisImage, Labels: map[string]string{labelRun: oldRun}}, nil, nil, nil, "groupbuy-test-"+oldRun+"-redis")
		if err != nil {
			t.Fatal(err)
		}
		oldContainer = "groupbuy-test-" + oldRun + "-redis"
		t.Cleanup(func() {
			_ = cli.ContainerRemove(context.Background(), created.ID, container.RemoveOptions{Force: true})
		})
	}

	res, err := Sweep(ctx, SweepOptions{OlderThan: 24 * time.Hour, DryRun: true})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if !slices.Contains(res.Vhosts, oldVhost) {
		t.Errorf("dry run found vhosts %v, want %s among them", res.Vhosts, oldVhost)
	}
	if !vhostExists(ctx, t, oldVhost) {
		t.Fatalf("dry run deleted %s", oldVhost)
	}

	res, err = Sweep(ctx, SweepOptions{OlderThan: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swept %+v", res)
	if !slices.Contains(res.Vhosts, oldVhost) {
		t.Errorf("swept vhosts %v, want %s among them", res.Vhosts, oldVhost)
	}
	if slices.Contains(res.Vhosts, live.vhost) {
		t.Errorf("swept the live run's vhost %s", live.vhost)
	}
	if vhostExists(ctx, t, oldVhost) {
		t.Errorf("vhost %s survived the sweep", oldVhost)
	}
	if !vhostExists(ctx, t, live.vhost) {
		t.Errorf("live vhost %s was deleted", live.vhost)
	}
	if oldContainer != "" && !slices.Contains(res.Containers, oldContainer) {
		t.Errorf("swept containers %v, want %s among them", res.Containers, oldContainer)
	}
}

func TestSweepRejectsNonPositiveAge(t *testing.T) {
	t.Parallel()
	if _, err := Sweep(t.Context(), SweepOptions{}); err == nil {
		t.Error("Sweep with OlderThan 0 = nil error, want one")
	}
}

func TestRunID(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_764_000_000, 0)
	id, err := newRunID(now)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := runStarted(id)
	if !ok || !got.Equal(now) {
		t.Errorf("runStarted(%q) = %v, %v; want %v, true", id, got, ok, now)
	}
	other, _ := newRunID(now)
	if other == id {
		t.Errorf("two run ids in the same second are both %q", id)
	}
}

func TestIsStale(t *testing.T) {
	t.Parallel()
	cutoff := time.Unix(1_764_000_000, 0)
	tests := []struct {
		name  string
		vhost string
		want  bool
	}{
		{"older run", "groupbuy-test-1763999999-0a1b2c3d", true},
		{"run at cutoff", "groupbuy-test-1764000000-0a1b2c3d", false},
		{"newer run", "groupbuy-test-1764000001-0a1b2c3d", false},
		{"default vhost", "/", false},
		{"other prefix", "orders-1763999999-0a1b2c3d", false},
		{"prefix but not a run id", "groupbuy-test-manual", false},
		{"bad random part", "groupbuy-test-1763999999-xyz", false},
		{"no random part", "groupbuy-test-1763999999", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := isStale(tt.vhost, cutoff); got != tt.want {
				t.Errorf("isStale(%q) = %v, want %v", tt.vhost, got, tt.want)
			}
		})
	}
}

func TestWithVhost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, vhost, want string
	}{
		{"default vhost url", "amqp://guest:guest@127.0.0.1:5672/", "groupbuy-test-1-a", "amqp://guest:guest@127.0.0.1:5672/groupbuy-test-1-a"},
		{"no path", "amqp://guest:guest@127.0.0.1:5672", "v", "amqp://guest:guest@127.0.0.1:5672/v"},
		{"replaces a vhost", "amqp://u:p@h:1/old", "new", "amqp://u:p@h:1/new"},
		{"escapes", "amqp://u:p@h:1/", "a/b", "amqp://u:p@h:1/a%2Fb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := withVhost(tt.in, tt.vhost)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("withVhost(%q, %q) = %q, want %q", tt.in, tt.vhost, got, tt.want)
			}
			uri, err := amqp.ParseURI(got)
			if err != nil {
				t.Fatal(err)
			}
			if uri.Vhost != tt.vhost {
				t.Errorf("amqp sees vhost %q, want %q", uri.Vhost, tt.vhost)
			}
		})
	}
}

// Not parallel: it clears GROUPBUY_TEST_INFRA for its duration.
func TestAutoModeFollowsDocker(t *testing.T) {
	t.Setenv(EnvMode, "")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	want := ModeTestcontainers
	if err := pingDocker(ctx); err != nil {
		want = ModeLocal
	}
	inf := NewWithOptions(t, Options{})
	if inf.Mode != want {
		t.Errorf("auto mode chose %q, want %q", inf.Mode, want)
	}
}

func TestTestcontainersNeverPulls(t *testing.T) {
	t.Parallel()
	requireMode(t, ModeTestcontainers)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const missing = "redis:0.0-testinfra-missing"
	_, err := Provision(ctx, Options{Mode: ModeTestcontainers, RedisImage: missing, Logf: t.Logf})
	if err == nil || !strings.Contains(err.Error(), "never pulls") {
		t.Fatalf("Provision with image %s = %v, want an error saying it is not pulled", missing, err)
	}
	cli, err := dockerClient(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.ImageInspect(ctx, missing); !errdefs.IsNotFound(err) {
		t.Errorf("image %s after Provision: inspect error %v, want not found", missing, err)
	}
}

func TestUnknownModeIsAnError(t *testing.T) {
	t.Parallel()
	if _, err := Provision(t.Context(), Options{Mode: "kubernetes"}); err == nil {
		t.Error("Provision with mode kubernetes = nil error, want one")
	}
}

func writeRedis(ctx context.Context, t *testing.T, inf *Infra, key, value string) {
	t.Helper()
	c := redis.NewClient(redisOptions(inf.RedisAddr, inf.RedisDB))
	defer c.Close()
	if err := c.Set(ctx, key, value, 0).Err(); err != nil {
		t.Fatalf("redis set %s: %v", key, err)
	}
	if got := readRedis(ctx, t, inf, key); got != value {
		t.Fatalf("redis get %s = %q, want %q", key, got, value)
	}
}

func readRedis(ctx context.Context, t *testing.T, inf *Infra, key string) string {
	t.Helper()
	c := redis.NewClient(redisOptions(inf.RedisAddr, inf.RedisDB))
	defer c.Close()
	got, err := c.Get(ctx, key).Result()
	if err != nil {
		t.Fatalf("redis get %s: %v", key, err)
	}
	return got
}

// roundTripAMQP publishes body to a durable queue of the vhost and consumes it back.
func roundTripAMQP(ctx context.Context, t *testing.T, amqpURL, body string) {
	t.Helper()
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		t.Fatalf("amqp dial %s: %v", redactURL(amqpURL), err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("testinfra.probe", true, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	confirm, err := ch.PublishWithDeferredConfirmWithContext(ctx, "", q.Name, false, false,
		amqp.Publishing{ContentType: "text/plain", DeliveryMode: amqp.Persistent, Body: []byte(body)})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := confirm.WaitContext(ctx); !ok || err != nil {
		t.Fatalf("publish not confirmed: ack %v, %v", ok, err)
	}
	msgs, err := ch.ConsumeWithContext(ctx, q.Name, "", false, false, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case d, ok := <-msgs:
		if !ok {
			t.Fatal("delivery channel closed before a message arrived")
		}
		if got := string(d.Body); got != body {
			t.Errorf("consumed %q, want %q", got, body)
		}
		if err := d.Ack(false); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatalf("no message consumed: %v", ctx.Err())
	}
}

// assertClaimed reads the lock key of the run's DB directly.
func assertClaimed(ctx context.Context, t *testing.T, inf *Infra) {
	t.Helper()
	lock := redis.NewClient(redisOptions(inf.RedisAddr, 0))
	defer lock.Close()
	got, err := lock.Get(ctx, inf.lockKey).Result()
	if err != nil || got != inf.RunID {
		t.Errorf("lock %s = %q, %v; want %q", inf.lockKey, got, err, inf.RunID)
	}
	if ttl := lock.PTTL(ctx, inf.lockKey).Val(); ttl <= 0 || ttl > defaultLockTTL {
		t.Errorf("lock %s ttl = %s, want in (0, %s]", inf.lockKey, ttl, defaultLockTTL)
	}
	if !vhostExists(ctx, t, inf.vhost) {
		t.Errorf("vhost %s not listed by the broker", inf.vhost)
	}
}

// assertReleased checks in the stores that a closed run left nothing behind.
func assertReleased(ctx context.Context, t *testing.T, inf *Infra, key string) {
	t.Helper()
	switch inf.Mode {
	case ModeLocal:
		// Another run may claim the DB as soon as it is free, so look for this run's key and
		// lock value rather than for an empty DB.
		data := redis.NewClient(redisOptions(inf.RedisAddr, inf.RedisDB))
		defer data.Close()
		if n, err := data.Exists(ctx, key).Result(); err != nil || n != 0 {
			t.Errorf("key %s in db %d after Close: exists=%d, %v; want flushed", key, inf.RedisDB, n, err)
		}
		lock := redis.NewClient(redisOptions(inf.RedisAddr, 0))
		defer lock.Close()
		if got, err := lock.Get(ctx, inf.lockKey).Result(); got == inf.RunID {
			t.Errorf("lock %s still held by this run after Close (%v)", inf.lockKey, err)
		}
		if vhostExists(ctx, t, inf.vhost) {
			t.Errorf("vhost %s still listed after Close", inf.vhost)
		}
		if conn, err := amqp.Dial(inf.RabbitURL); err == nil {
			_ = conn.Close()
			t.Errorf("amqp connect to deleted vhost %s succeeded", inf.vhost)
		}
	case ModeTestcontainers:
		cli, err := dockerClient(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		if len(inf.containerIDs) != 2 {
			t.Errorf("run recorded %d containers, want 2", len(inf.containerIDs))
		}
		for _, id := range inf.containerIDs {
			if _, err := cli.ContainerInspect(ctx, id); !errdefs.IsNotFound(err) {
				t.Errorf("container %.12s after Close: inspect error %v, want not found", id, err)
			}
		}
	default:
		t.Fatalf("unknown mode %q", inf.Mode)
	}
}

func vhostExists(ctx context.Context, t *testing.T, vhost string) bool {
	t.Helper()
	o := Options{}.withDefaults()
	admins, _, err := brokerAdmins(o.RabbitURL, o.RabbitManagementURL)
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	for _, a := range admins {
		names, err := a.list(ctx)
		if err == nil {
			return slices.Contains(names, vhost)
		}
		errs = append(errs, err)
	}
	t.Fatalf("list vhosts: %v", errors.Join(errs...))
	return false
}
