//go:build integration

// GroupActor's state store (Groups) against a real daprd: the actorhost.State contract, and
// the read of a group an earlier version saved as actor state. The test starts a stack of the
// group app alone (tests/harness, on a Redis DB and RabbitMQ vhost of its own) and talks to
// the app's sidecar as the app does. scripts/test.sh runs it in the integration stage:
//
//	go test -tags integration -count=1 -run TestGroupsOnDaprd -v ./apps/group/internal/daprstore/
package daprstore_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost/statetest"
	"github.com/groupbuy/groupbuy/apps/group/internal/dapractor"
	"github.com/groupbuy/groupbuy/apps/group/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
	"github.com/groupbuy/groupbuy/tests/harness"
)

func TestGroupsOnDaprd(t *testing.T) {
	s := harness.StartAppsForTest(t, "group-daprstore", "group")
	_, token := s.Sup.Tokens()
	legacy := dapractor.New(sidecar.Config{Host: "127.0.0.1", HTTPPort: s.App("group").DaprHTTPPort, APIToken: token})
	groups := daprstore.NewGroups(daprstate.New(s.SidecarClient(t, "group"), storeName), legacy)

	t.Run("contract", func(t *testing.T) {
		statetest.Contract(t, func(*testing.T) actorhost.State { return groups })
	})

	// A group saved as actor state by an earlier version is read through the actor state API
	// and moves to its own key with its first save. It is written here as that version wrote
	// it: an actor state transaction inside an active actor (a method call activates it).
	// The stack's store is its own, so fixed ids are safe.
	t.Run("legacy actor state moves with the first save", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		if _, err := legacy.Get(ctx, "legacy1"); !errors.Is(err, group.ErrNotFound) {
			t.Fatalf("activate the actor: %v, want %v", err, group.ErrNotFound)
		}
		old := openGroup("legacy1")
		ops, _ := json.Marshal([]map[string]any{{"operation": "upsert", "request": map[string]any{"key": dapractor.StateKey, "value": old}}})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1.0/actors/GroupActor/legacy1/state", s.App("group").DaprHTTPPort), bytes.NewReader(ops))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("dapr-api-token", token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("save legacy actor state: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("save legacy actor state: %d %s", resp.StatusCode, body)
		}

		g, version, found, err := groups.Get(ctx, "legacy1")
		if err != nil || !found || version != "" || g.ID != "legacy1" || len(g.Seats) != 1 {
			t.Fatalf("Get(legacy) = %+v, version %q, found %t, %v; want the legacy group at version \"\"", g, version, found, err)
		}
		g.Status = "failed"
		saved, err := groups.Save(ctx, "legacy1", g, version)
		if err != nil {
			t.Fatalf("Save(moved): %v", err)
		}
		if _, err := groups.Save(ctx, "legacy1", old, version); !errors.Is(err, actorhost.ErrStale) {
			t.Errorf("second moving Save error = %v, want %v", err, actorhost.ErrStale)
		}
		var stored struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if found, err := s.State(ctx, "group", "group:legacy1", &stored); err != nil || !found || stored.Status != "failed" {
			t.Errorf("group||group:legacy1 = %+v (found %t, %v), want the moved, failed group", stored, found, err)
		}
		if _, v, _, err := groups.Get(ctx, "legacy1"); err != nil || v != saved {
			t.Errorf("Get after the move: version %q, %v; want %q", v, err, saved)
		}
	})
}
