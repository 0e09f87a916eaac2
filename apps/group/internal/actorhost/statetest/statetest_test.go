package statetest_test

import (
	"testing"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost/statetest"
)

func TestMemoryContract(t *testing.T) {
	t.Parallel()
	statetest.Contract(t, func(*testing.T) actorhost.State { return statetest.NewMemory() })
}
