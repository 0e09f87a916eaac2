package ordertest_test

import (
	"testing"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
)

func TestGroupsContract(t *testing.T) {
	t.Parallel()
	ordertest.GroupIndexContract(t, func(*testing.T) order.GroupIndex { return ordertest.NewGroups() })
}
