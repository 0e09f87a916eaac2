package storetest_test

import (
	"testing"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
)

func TestFakeContract(t *testing.T) {
	storetest.Contract(t, func(*testing.T) stock.Store { return storetest.NewFake() })
}
