package devstack

import (
	"fmt"
	"net"
	"sync"
)

// PortKind names what a port is used for; PortMapper receives it.
type PortKind string

// Ports of an app and its sidecar (appID is the app's id).
const (
	PortApp              PortKind = "app"
	PortDaprHTTP         PortKind = "dapr-http"
	PortDaprGRPC         PortKind = "dapr-grpc"
	PortDaprInternalGRPC PortKind = "dapr-internal-grpc"
	PortMetrics          PortKind = "metrics"
	PortProfile          PortKind = "profile"
)

// Ports of the control plane (appID is empty).
const (
	PortPlacement           PortKind = "placement"
	PortPlacementRaft       PortKind = "placement-raft"
	PortPlacementHealthz    PortKind = "placement-healthz"
	PortScheduler           PortKind = "scheduler"
	PortSchedulerHealthz    PortKind = "scheduler-healthz"
	PortSchedulerEtcdClient PortKind = "scheduler-etcd-client"
	PortSchedulerEtcdPeer   PortKind = "scheduler-etcd-peer"
)

// EnvPortKind is the kind of a port carried in an app's environment variable, such as
// "env:ADMIN_PORT" (see Options.PortEnvVars).
func EnvPortKind(name string) PortKind { return PortKind("env:" + name) }

// PortMapper turns a port from the run file (or a control-plane default) into the port to
// use. appID is empty for control-plane ports. It is called once per port while a Plan is
// built; the Plan keeps the results, so restarting an app reuses its ports.
type PortMapper func(appID string, kind PortKind, port int) (int, error)

// OffsetPorts shifts every non-zero port by offset (the dev launcher's --port-offset).
func OffsetPorts(offset int) PortMapper {
	return func(_ string, _ PortKind, port int) (int, error) {
		if port == 0 {
			return 0, nil
		}
		p := port + offset
		if p <= 0 || p > 65535 {
			return 0, fmt.Errorf("port %d shifted by %d is out of range", port, offset)
		}
		return p, nil
	}
}

// FreePorts gives every (appID, kind) its own free TCP port on 127.0.0.1, as tests need to
// run next to a dev stack or each other. The same (appID, kind) always gets the same port, and
// no port is handed out twice by one mapper. A port is free when handed out; another process
// may still take it before the stack binds it, which is rare enough for tests.
func FreePorts() PortMapper {
	var (
		mu       sync.Mutex
		assigned = map[string]int{}
		used     = map[int]bool{}
	)
	return func(appID string, kind PortKind, _ int) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		key := appID + "\x00" + string(kind)
		if p, ok := assigned[key]; ok {
			return p, nil
		}
		for range 100 {
			p, err := freePort()
			if err != nil {
				return 0, err
			}
			if used[p] {
				continue
			}
			used[p] = true
			assigned[key] = p
			return p, nil
		}
		return 0, fmt.Errorf("no free port for %s %s", appID, kind)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func identityPorts(_ string, _ PortKind, port int) (int, error) { return port, nil }
