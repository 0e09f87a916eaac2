package ordertest_test

import (
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
)

func TestGroupsContract(t *testing.T) {
	t.Parallel()
	ordertest.GroupIndexContract(t, func(*testing.T) order.GroupIndex { return ordertest.NewGroups() })
}

func TestPendingContract(t *testing.T) {
	t.Parallel()
	ordertest.PendingContract(t, func(*testing.T) (order.Pending, time.Time) { return ordertest.NewPending(), ordertest.T0 })
}

func TestUserIndexContract(t *testing.T) {
	t.Parallel()
	ordertest.UserIndexContract(t, func(*testing.T) (order.UserIndex, time.Time) { return ordertest.NewUsers(), ordertest.T0 })
}
