//go:build integration

// The pending set and the user index against a real daprd: the contracts their fakes share
// (the legacy pending shards are left to the unit tests: the app's own sweep works on them
// here). The test starts a
// stack of the order app alone (tests/harness, on a Redis DB and RabbitMQ vhost of its own)
// and talks to the app's sidecar as the app does. scripts/test.sh runs it in the integration
// stage:
//
//	go test -tags integration -count=1 -run TestOnDaprd -v ./apps/order/internal/daprstore/
package daprstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/tests/harness"
)

func TestOnDaprd(t *testing.T) {
	s := harness.StartAppsForTest(t, "order-daprstore", "order")
	state := daprstate.New(s.SidecarClient(t, "order"), component)
	run := 0
	// Every case gets key spaces of its own: the stack's store is shared by the cases.
	next := func() int { run++; return run }

	t.Run("pending contract", func(t *testing.T) {
		ordertest.PendingContract(t, func(*testing.T) (order.Pending, time.Time) {
			// The cases share the store and its directory, and run one after the other: each
			// lives a day before the one before it, so no case sees another's entries, and
			// all are far in the future, out of reach of the app's own sweep. The clock is
			// fixed, so leases do not run out mid-case.
			now := time.Now().UTC().Add(time.Duration(1000-next()) * 24 * time.Hour).Truncate(time.Second)
			return daprstore.NewPending(state, daprstore.PendingConfig{Shards: 4, Window: 2 * time.Second, Now: func() time.Time { return now }}), now
		})
	})

	t.Run("user index contract", func(t *testing.T) {
		ordertest.UserIndexContract(t, func(*testing.T) (order.UserIndex, time.Time) {
			return &prefixedUsers{daprstore.NewUsers(state, 4, nil), fmt.Sprintf("r%d-", next())}, time.Now()
		})
	})
}

// prefixedUsers gives each contract case users of its own in the shared store.
type prefixedUsers struct {
	*daprstore.Users
	prefix string
}

func (u *prefixedUsers) Add(ctx context.Context, userID string, e order.IndexEntry, limit int) error {
	return u.Users.Add(ctx, u.prefix+userID, e, limit)
}

func (u *prefixedUsers) SetStatus(ctx context.Context, userID, orderID string, st order.Status) error {
	return u.Users.SetStatus(ctx, u.prefix+userID, orderID, st)
}

func (u *prefixedUsers) Remove(ctx context.Context, userID, orderID string) error {
	return u.Users.Remove(ctx, u.prefix+userID, orderID)
}

func (u *prefixedUsers) List(ctx context.Context, userID, before string, limit int) ([]order.IndexEntry, error) {
	return u.Users.List(ctx, u.prefix+userID, before, limit)
}
