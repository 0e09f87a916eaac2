package deadlettertest_test

import (
	"testing"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter/deadlettertest"
)

func TestFakeContract(t *testing.T) {
	t.Parallel()
	deadlettertest.Contract(t, func(*testing.T) deadletter.Store { return deadlettertest.NewFake() })
}
