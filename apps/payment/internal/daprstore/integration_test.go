//go:build integration

// The repository contract against a real daprd and its state store. The test starts a stack
// of the payment app alone (tests/harness: placement, scheduler, the app and its daprd with
// the run file's components and resiliency, on a Redis DB and RabbitMQ vhost of its own from
// tests/testinfra) and talks to the app's sidecar as the app does. Keys land under the app id
// ("payment||charge:contract-…"). scripts/test.sh runs it in the integration stage:
//
//	go test -tags integration -count=1 -run TestContractOnDaprd -v ./apps/payment/internal/daprstore/
package daprstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/payment/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment/paymenttest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/tests/harness"
)

func TestContractOnDaprd(t *testing.T) {
	s := harness.StartAppsForTest(t, "payment-daprstore", "payment")
	repo := daprstore.New(daprstate.New(s.SidecarClient(t, "payment"), storeName))

	t.Run("contract", func(t *testing.T) {
		paymenttest.RunContract(t, func(*testing.T) payment.Repository { return repo })
	})

	// The stack's own Redis DB is fresh, so fixed ids are safe here. The key and document
	// are the ones the integration suite reads (tests/integration: TestPayAfterDeclineSucceeds).
	t.Run("stored where the suite reads it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		want := payment.Charge{ChargeID: "ch_it", OrderID: "it-o1", Status: payment.StatusSucceeded, AmountCents: 1999,
			CreatedAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
		if _, err := repo.UpdateCharge(ctx, want.OrderID, func(c *payment.Charge, _ bool) error { *c = want; return nil }); err != nil {
			t.Fatalf("UpdateCharge: %v", err)
		}
		var got payment.Charge
		found, err := s.State(ctx, "payment", "charge:"+want.OrderID, &got)
		if err != nil || !found || got != want {
			t.Errorf("payment||charge:%s = %+v (found %t, %v), want %+v", want.OrderID, got, found, err, want)
		}
	})
}
