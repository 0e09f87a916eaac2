package order_test

import "github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"

// env is ordertest.Env with the helpers these tests add to it (place, mustOrder, …).
type env struct{ *ordertest.Env }

func newEnv() *env { return &env{ordertest.NewEnv()} }
