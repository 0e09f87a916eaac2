package testinfra

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/redis/go-redis/v9"
	"github.com/testcontainers/testcontainers-go"
	tcrabbitmq "github.com/testcontainers/testcontainers-go/modules/rabbitmq"
	tcredis "github.com/testcontainers/testcontainers-go/modules/redis"
)

// labelRun marks the containers of a run, so that Sweep can find the ones a crashed run left:
// without Ryuk (see ensureTestcontainersEnv) nothing else removes them.
const labelRun = "groupbuy.testinfra.run"

// testcontainersEnv are settings this machine needs: the Ryuk reaper image cannot be pulled,
// and testcontainers thinks it runs inside a container, so it would dial the bridge gateway
// instead of the loopback address the ports are published on.
var testcontainersEnv = [][2]string{
	{"TESTCONTAINERS_RYUK_DISABLED", "true"},
	{"TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1"},
}

// ensureTestcontainersEnv sets the testcontainersEnv variables the environment leaves unset.
// It must run before the first testcontainers call: testcontainers reads them only once.
func ensureTestcontainersEnv() error {
	for _, kv := range testcontainersEnv {
		if _, ok := os.LookupEnv(kv[0]); ok {
			continue
		}
		if err := os.Setenv(kv[0], kv[1]); err != nil {
			return fmt.Errorf("set %s: %w", kv[0], err)
		}
	}
	return nil
}

// dockerClient returns testcontainers' Docker client, which finds the daemon the way
// testcontainers will (DOCKER_HOST, ~/.testcontainers.properties, default sockets).
func dockerClient(ctx context.Context) (cli *testcontainers.DockerClient, err error) {
	if err := ensureTestcontainersEnv(); err != nil {
		return nil, err
	}
	// testcontainers panics when it finds no Docker host at all.
	defer func() {
		if r := recover(); r != nil {
			cli, err = nil, fmt.Errorf("no docker host: %v", r)
		}
	}()
	return testcontainers.NewDockerClientWithOpts(ctx)
}

// pingDocker reports whether a Docker daemon answers.
func pingDocker(ctx context.Context) error {
	cli, err := dockerClient(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	_, err = cli.Ping(ctx)
	return err
}

// provisionContainers starts a Redis and a RabbitMQ container for the run, in parallel.
func provisionContainers(ctx context.Context, opts Options, inf *Infra) error {
	cli, err := dockerClient(ctx)
	if err != nil {
		return err
	}
	defer cli.Close()
	if _, err := cli.Ping(ctx); err != nil {
		return fmt.Errorf("docker daemon does not answer: %w", err)
	}
	// testcontainers pulls missing images; this machine cannot, and a pull of a look-alike
	// from a registry is not what the tests were written against.
	for _, img := range []string{opts.RedisImage, opts.RabbitImage} {
		if _, err := cli.ImageInspect(ctx, img); err != nil {
			if errdefs.IsNotFound(err) {
				return fmt.Errorf("image %s is not on the docker host and testinfra never pulls: build it with `sudo scripts/standin-images.sh`, or use %s=local", img, EnvMode)
			}
			return fmt.Errorf("inspect image %s: %w", img, err)
		}
	}

	customize := func(service string) []testcontainers.ContainerCustomizer {
		return []testcontainers.ContainerCustomizer{
			testcontainers.WithLogger(tcLogger{opts.Logf}),
			testcontainers.WithName("groupbuy-test-" + inf.RunID + "-" + service),
			testcontainers.WithLabels(map[string]string{labelRun: inf.RunID}),
			publishOnLoopback(),
		}
	}
	var (
		wg                  sync.WaitGroup
		redisC              *tcredis.RedisContainer
		rabbitC             *tcrabbitmq.RabbitMQContainer
		redisErr, rabbitErr error
	)
	start := time.Now()
	wg.Go(func() { redisC, redisErr = tcredis.Run(ctx, opts.RedisImage, customize("redis")...) })
	wg.Go(func() { rabbitC, rabbitErr = tcrabbitmq.Run(ctx, opts.RabbitImage, customize("rabbitmq")...) })
	wg.Wait()
	// Run returns the container along with an error when it started but never got ready.
	if redisC != nil {
		inf.containerIDs = append(inf.containerIDs, redisC.GetContainerID())
		inf.onClose("terminate redis container", terminate(redisC))
	}
	if rabbitC != nil {
		inf.containerIDs = append(inf.containerIDs, rabbitC.GetContainerID())
		inf.onClose("terminate rabbitmq container", terminate(rabbitC))
	}
	if err := errors.Join(redisErr, rabbitErr); err != nil {
		return err
	}
	opts.logf("testinfra: containers started in %s", time.Since(start).Round(time.Millisecond))

	if inf.RedisAddr, err = redisC.PortEndpoint(ctx, "6379/tcp", ""); err != nil {
		return fmt.Errorf("redis endpoint: %w", err)
	}
	amqpURL, err := rabbitC.AmqpURL(ctx)
	if err != nil {
		return fmt.Errorf("rabbitmq endpoint: %w", err)
	}
	inf.RabbitURL = amqpURL + "/" // the default vhost, explicitly
	if inf.rabbitManagementURL, err = rabbitC.HttpURL(ctx); err != nil {
		return fmt.Errorf("rabbitmq management endpoint: %w", err)
	}

	// The modules wait for log lines; the tests need working connections.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := waitRedis(wctx, inf.RedisAddr); err != nil {
		return err
	}
	return waitAMQP(wctx, inf.RabbitURL)
}

// publishOnLoopback publishes every exposed port on 127.0.0.1 only, whatever the daemon's
// default bind address: these containers are for this machine's tests alone.
func publishOnLoopback() testcontainers.CustomizeRequestOption {
	return func(req *testcontainers.GenericContainerRequest) error {
		_, bindings, err := nat.ParsePortSpecs(req.ExposedPorts)
		if err != nil {
			return fmt.Errorf("parse exposed ports: %w", err)
		}
		for port, bs := range bindings {
			for i := range bs {
				bs[i].HostIP = "127.0.0.1"
			}
			bindings[port] = bs
		}
		prev := req.HostConfigModifier
		req.HostConfigModifier = func(hc *container.HostConfig) {
			if prev != nil {
				prev(hc)
			}
			if hc.PortBindings == nil {
				hc.PortBindings = nat.PortMap{}
			}
			for port, bs := range bindings {
				hc.PortBindings[port] = bs
			}
		}
		return nil
	}
}

func terminate(c testcontainers.Container) func(context.Context) error {
	return func(ctx context.Context) error {
		// Throwaway state: kill rather than wait for a graceful stop.
		return c.Terminate(ctx, testcontainers.StopTimeout(0))
	}
}

func waitRedis(ctx context.Context, addr string) error {
	c := redis.NewClient(redisOptions(addr, 0))
	defer c.Close()
	for {
		err := c.Ping(ctx).Err()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis ping %s: %w (last error: %w)", addr, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// tcLogger routes testcontainers' output to Options.Logf.
type tcLogger struct{ logf func(string, ...any) }

func (l tcLogger) Printf(format string, args ...any) {
	if l.logf != nil {
		l.logf(format, args...)
	}
}
