package harness

import (
	"context"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"

	"github.com/groupbuy/groupbuy/pkg/sidecar"
	"github.com/groupbuy/groupbuy/tests/testinfra"
)

// SidecarClient returns a Dapr client of an app's sidecar (gRPC, with the stack's API token),
// the client the app itself uses: adapter contract suites run against a real daprd through
// it. It is closed when the test ends.
func (s *Stack) SidecarClient(t testing.TB, appID string) dapr.Client {
	t.Helper()
	_, token := s.Sup.Tokens()
	c, err := sidecar.NewClient(sidecar.Config{Host: "127.0.0.1", GRPCPort: s.App(appID).DaprGRPCPort, APIToken: token})
	if err != nil {
		t.Fatalf("dapr client of %s: %v", appID, err)
	}
	t.Cleanup(c.Close)
	return c
}

// StartAppsForTest provisions infrastructure of its own (tests/testinfra: a Redis DB and a
// RabbitMQ vhost) and starts a stack of the given apps on it, both gone when the test ends:
// for integration tests outside tests/integration, which have no shared stack.
func StartAppsForTest(t testing.TB, name string, apps ...string) *Stack {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	infra, err := testinfra.Provision(ctx, testinfra.Options{Logf: t.Logf})
	if err != nil {
		t.Fatalf("provision infra: %v", err)
	}
	// Registered first, so it runs after the stack's own cleanup has stopped it.
	t.Cleanup(func() {
		if err := infra.Close(context.Background()); err != nil {
			t.Logf("close infra: %v", err)
		}
	})
	return StartForTest(t, infra, Options{Name: name, Apps: apps})
}
