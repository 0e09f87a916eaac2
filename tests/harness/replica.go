package harness

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/groupbuy/groupbuy/pkg/devstack"
)

// Replica is one more instance of an app of a running stack: the same app id, binary,
// environment and components, with its own process, daprd and ports. Name resolution still
// sends invocations of the app id to the stack's first instance; reach a replica through its
// own sidecar (a daprd invoking its own app id calls its local app) or its app port.
type Replica struct {
	devstack.App
	// Name is the replica's process name, "<app id>-<n>"; its sidecar is "<Name>-daprd" and
	// their logs are <Name>.log and <Name>-daprd.log in the stack's log directory.
	Name string
}

// AdminURL is the replica's admin listener (metrics, pprof).
func (r Replica) AdminURL() string { return "http://127.0.0.1:" + r.Env["ADMIN_PORT"] }

// StartReplica starts one more instance of the stack's app appID, with env added to its
// environment, and waits until it and its daprd are ready. The stack's Stop ends it.
func (s *Stack) StartReplica(ctx context.Context, appID string, env map[string]string) (Replica, error) {
	base, ok := s.Plan.App(appID)
	if !ok {
		return Replica{}, fmt.Errorf("start replica: no app %q in the stack", appID)
	}
	if len(base.Command) == 0 {
		return Replica{}, fmt.Errorf("start replica: app %q has no command", appID)
	}
	s.mu.Lock()
	if s.replicas == nil {
		s.replicas = map[string]int{}
	}
	s.replicas[appID]++
	n := s.replicas[appID] + 1 // the stack's own instance is the first
	s.mu.Unlock()

	a := base
	a.Env = maps.Clone(base.Env)
	maps.Copy(a.Env, env)
	ports := devstack.FreePorts()
	next := func(kind devstack.PortKind) (int, error) { return ports(appID, kind, 0) }
	for _, p := range []struct {
		kind devstack.PortKind
		port *int
	}{
		{devstack.PortApp, &a.AppPort},
		{devstack.PortDaprHTTP, &a.DaprHTTPPort},
		{devstack.PortDaprGRPC, &a.DaprGRPCPort},
		{devstack.PortDaprInternalGRPC, &a.DaprInternalGRPCPort},
		{devstack.PortMetrics, &a.MetricsPort},
		{devstack.PortProfile, &a.ProfilePort},
	} {
		if *p.port == 0 {
			continue
		}
		var err error
		if *p.port, err = next(p.kind); err != nil {
			return Replica{}, err
		}
	}
	if _, ok := a.Env["ADMIN_PORT"]; ok {
		port, err := next(devstack.EnvPortKind("ADMIN_PORT"))
		if err != nil {
			return Replica{}, err
		}
		a.Env["ADMIN_PORT"] = strconv.Itoa(port)
	}

	r := Replica{App: a, Name: fmt.Sprintf("%s-%d", appID, n)}
	appToken, daprToken := s.Sup.Tokens()
	sidecar := devstack.ProcessSpec{
		Name:  r.Name + "-daprd",
		Path:  filepath.Join(s.Plan.DaprBinDir, "daprd"),
		Args:  s.Plan.DaprdArgs(a),
		Dir:   a.AppDirPath,
		Env:   s.Sup.SidecarEnv(),
		Ready: []devstack.ReadyCheck{devstack.SidecarReadyCheck(a)},
	}
	app := devstack.ProcessSpec{
		Name:  r.Name,
		Path:  a.Command[0],
		Args:  a.Command[1:],
		Dir:   a.AppDirPath,
		Env:   append(s.Plan.AppEnv(a), "APP_API_TOKEN="+appToken, "DAPR_API_TOKEN="+daprToken),
		Ready: []devstack.ReadyCheck{devstack.AppReadyCheck(a)},
	}
	if err := s.Sup.StartProcess(ctx, sidecar, app); err != nil {
		return Replica{}, fmt.Errorf("start replica %s (logs in %s): %w", r.Name, s.LogDir, err)
	}
	return r, nil
}

// RestartApp kills the stack's instance of appID with its daprd and starts it again on the
// same ports, with env added to (or replacing in) its environment from then on.
func (s *Stack) RestartApp(ctx context.Context, appID string, env map[string]string) error {
	if err := s.Sup.KillApp(appID); err != nil {
		return err
	}
	plan := s.Sup.Plan()
	i := slices.IndexFunc(plan.Apps, func(a devstack.App) bool { return a.AppID == appID })
	if i < 0 {
		return fmt.Errorf("restart app: no app %q in the stack", appID)
	}
	a := &plan.Apps[i]
	a.Env = maps.Clone(a.Env)
	if a.Env == nil {
		a.Env = map[string]string{}
	}
	maps.Copy(a.Env, env)
	return s.Sup.StartApp(ctx, appID)
}
