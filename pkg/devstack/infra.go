package devstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DependencyKind names an external service the components need.
type DependencyKind string

// Dependency kinds found in components.
const (
	DependencyRedis    DependencyKind = "redis"
	DependencyRabbitMQ DependencyKind = "rabbitmq"
)

// Environment variables the dev launcher reads to point components elsewhere; named in the
// hints of UnreachableError.
const (
	EnvRedisAddr   = "GROUPBUY_REDIS_ADDR"
	EnvRabbitMQURL = "GROUPBUY_RABBITMQ_URL"
)

// Dependency is an external service at one address, with the components that use it.
type Dependency struct {
	Kind       DependencyKind
	Addr       string   // host:port that is dialed
	Display    string   // the address as configured, password redacted
	Components []string // component names
}

// redisTypes are the component types whose redisHost metadata names a Redis server.
var redisTypes = []string{"state.redis", "pubsub.redis", "lock.redis", "configuration.redis", "bindings.redis"}

// rabbitTypes are the component types that connect to RabbitMQ.
var rabbitTypes = []string{"pubsub.rabbitmq", "bindings.rabbitmq"}

// findDependencies lists the Redis and RabbitMQ servers used by the effective components
// that some selected app loads (its resources set, and in scope).
func (p *Plan) findDependencies() ([]Dependency, error) {
	var deps []Dependency
	add := func(kind DependencyKind, addr, display, comp string) {
		for i := range deps {
			if deps[i].Kind == kind && deps[i].Addr == addr {
				if !slices.Contains(deps[i].Components, comp) {
					deps[i].Components = append(deps[i].Components, comp)
				}
				return
			}
		}
		deps = append(deps, Dependency{Kind: kind, Addr: addr, Display: display, Components: []string{comp}})
	}
	for _, set := range p.resourceSets {
		for _, r := range set.resources {
			if r.Kind != "Component" || !r.InScope(set.appIDs...) {
				continue
			}
			md := r.Metadata()
			switch {
			case slices.Contains(redisTypes, r.Type):
				host := strings.TrimSpace(strings.Split(md["redisHost"], ",")[0])
				if host == "" {
					return nil, fmt.Errorf("component %q (%s): no redisHost", r.Name, r.Type)
				}
				addr, err := withDefaultPort(host, "6379")
				if err != nil {
					return nil, fmt.Errorf("component %q: redisHost: %w", r.Name, err)
				}
				add(DependencyRedis, addr, host, r.Name)
			case slices.Contains(rabbitTypes, r.Type):
				addr, display, err := rabbitAddress(md)
				if err != nil {
					return nil, fmt.Errorf("component %q (%s): %w", r.Name, r.Type, err)
				}
				add(DependencyRabbitMQ, addr, display, r.Name)
			}
		}
	}
	return deps, nil
}

// rabbitAddress reads the broker address from pubsub.rabbitmq metadata: connectionString,
// its older name host, or hostname (with protocol).
func rabbitAddress(md map[string]string) (addr, display string, err error) {
	conn := md["connectionString"]
	if conn == "" {
		conn = md["host"]
	}
	if conn == "" && md["hostname"] != "" {
		scheme := md["protocol"]
		if scheme == "" {
			scheme = "amqp"
		}
		conn = scheme + "://" + md["hostname"]
	}
	if conn == "" {
		return "", "", errors.New("no connectionString")
	}
	u, err := url.Parse(conn)
	if err != nil {
		return "", "", errors.New("connectionString is not a URL")
	}
	port := "5672"
	if u.Scheme == "amqps" {
		port = "5671"
	}
	addr, err = withDefaultPort(u.Host, port)
	if err != nil {
		return "", "", err
	}
	return addr, u.Redacted(), nil
}

func withDefaultPort(hostport, port string) (string, error) {
	if hostport == "" {
		return "", errors.New("empty address")
	}
	if _, _, err := net.SplitHostPort(hostport); err == nil {
		return hostport, nil
	}
	return net.JoinHostPort(strings.Trim(hostport, "[]"), port), nil
}

// UnreachableError says that a dependency did not accept a TCP connection, and how to fix it.
type UnreachableError struct {
	Dependency Dependency
	Err        error
}

func (e *UnreachableError) Error() string {
	d := e.Dependency
	return fmt.Sprintf("%s at %s (components %s) is not reachable: %v\n  fix: %s",
		d.Kind, d.Display, strings.Join(d.Components, ", "), e.Err, fixHint(d))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

func fixHint(d Dependency) string {
	_, port, _ := net.SplitHostPort(d.Addr)
	switch d.Kind {
	case DependencyRedis:
		return fmt.Sprintf("start Redis: redis-server --port %s --bind 127.0.0.1 --save '' "+
			"(or apt-get install redis-server), or use another one: %s=host:port", port, EnvRedisAddr)
	case DependencyRabbitMQ:
		return fmt.Sprintf("start RabbitMQ on port %s: service rabbitmq-server start "+
			"(or apt-get install rabbitmq-server), or use another one: %s=amqp://user:pass@host:port/",
			port, EnvRabbitMQURL)
	}
	return "start it"
}

// CheckDependencies dials every dependency and returns one UnreachableError per dependency
// that does not answer, joined, or nil when all answer.
func CheckDependencies(ctx context.Context, deps []Dependency) error {
	var errs []error
	for _, e := range unreachable(ctx, deps) {
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

func unreachable(ctx context.Context, deps []Dependency) []*UnreachableError {
	errs := make([]*UnreachableError, len(deps))
	var wg sync.WaitGroup
	for i, d := range deps {
		wg.Go(func() {
			if err := dialOnce(ctx, d.Addr, 2*time.Second); err != nil {
				errs[i] = &UnreachableError{Dependency: d, Err: err}
			}
		})
	}
	wg.Wait()
	var out []*UnreachableError
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

func dialOnce(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return c.Close()
}

// dependencyProcess describes how to start a missing dependency on loopback for the dev
// stack, or says why it cannot. The server runs as a supervised child with its data under
// outDir and stops with the stack: a convenience for a first run, not a place to keep data.
func dependencyProcess(d Dependency, outDir string) (ProcessSpec, time.Duration, error) {
	host, port, err := net.SplitHostPort(d.Addr)
	if err != nil {
		return ProcessSpec{}, 0, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return ProcessSpec{}, 0, fmt.Errorf("%s is not a loopback address", host)
	}
	portNum, _ := strconv.Atoi(port)
	switch d.Kind {
	case DependencyRedis:
		bin, err := exec.LookPath("redis-server")
		if err != nil {
			return ProcessSpec{}, 0, errors.New("redis-server is not on PATH")
		}
		dir := filepath.Join(outDir, "redis")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return ProcessSpec{}, 0, err
		}
		return ProcessSpec{
			Name:  "redis",
			Path:  bin,
			Args:  []string{"--port", port, "--bind", loopback, "--save", "", "--appendonly", "no", "--dir", dir},
			Dir:   dir,
			Ready: []ReadyCheck{{Name: "redis", URL: "tcp://" + net.JoinHostPort(loopback, port)}},
		}, 20 * time.Second, nil
	case DependencyRabbitMQ:
		bin, err := exec.LookPath("rabbitmq-server")
		if err != nil {
			return ProcessSpec{}, 0, errors.New("rabbitmq-server is not on PATH")
		}
		dir := filepath.Join(outDir, "rabbitmq")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return ProcessSpec{}, 0, err
		}
		// No plugins (the management plugin would listen on 0.0.0.0:15672), listeners and
		// the Erlang port mapper on loopback only, state under outDir. epmd is started by
		// Erlang itself as a daemon and, as usual for Erlang, outlives the broker.
		plugins := filepath.Join(dir, "enabled_plugins")
		conf := filepath.Join(dir, "rabbitmq.conf")
		if err := os.WriteFile(plugins, []byte("[].\n"), 0o644); err != nil {
			return ProcessSpec{}, 0, err
		}
		confText := fmt.Sprintf("listeners.tcp.default = %s:%s\nloopback_users.guest = true\n", loopback, port)
		if err := os.WriteFile(conf, []byte(confText), 0o644); err != nil {
			return ProcessSpec{}, 0, err
		}
		if err := chownForRabbitMQ(dir); err != nil {
			return ProcessSpec{}, 0, err
		}
		return ProcessSpec{
			Name: "rabbitmq",
			Path: bin,
			Dir:  dir,
			Env: []string{
				"RABBITMQ_NODENAME=groupbuy-dev-" + port + "@localhost",
				"RABBITMQ_NODE_IP_ADDRESS=" + loopback,
				"RABBITMQ_NODE_PORT=" + port,
				"RABBITMQ_DIST_PORT=" + strconv.Itoa(portNum+20000),
				"ERL_EPMD_ADDRESS=" + loopback,
				"RABBITMQ_CONFIG_FILE=" + conf,
				"RABBITMQ_ENABLED_PLUGINS_FILE=" + plugins,
				"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
				"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
				"RABBITMQ_LOGS=-",
			},
			Ready: []ReadyCheck{{Name: "rabbitmq", URL: "tcp://" + net.JoinHostPort(loopback, port)}},
		}, 90 * time.Second, nil
	}
	return ProcessSpec{}, 0, fmt.Errorf("cannot start %s", d.Kind)
}

// chownForRabbitMQ hands dir to the rabbitmq user when running as root: the packaged
// rabbitmq-server wrapper (Debian's) drops to that user before it boots the broker.
func chownForRabbitMQ(dir string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("rabbitmq")
	if err != nil {
		return nil // no such user: the server runs as root and can write there
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil
	}
	return filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}
