//go:build integration

// The repository contract against a real daprd and its state store. It needs a running sidecar
// (any app id; keys are written under it, e.g. "payment||charge:contract-…") whose gRPC port is
// in PAYMENT_TEST_DAPR_GRPC_PORT, and skips otherwise. Run the sidecar without dapr/resiliency.yaml:
// the contract races 20 creates on one key, and that policy retries every losing first-write and
// counts it against the state store's circuit breaker, which then opens.
//
//	PAYMENT_TEST_DAPR_GRPC_PORT=50104 go test -tags integration -run TestContractOnDaprd ./apps/payment/internal/daprstore/
package daprstore_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/groupbuy/groupbuy/apps/payment/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment/paymenttest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

func TestContractOnDaprd(t *testing.T) {
	port, err := strconv.Atoi(os.Getenv("PAYMENT_TEST_DAPR_GRPC_PORT"))
	if err != nil {
		t.Skip("PAYMENT_TEST_DAPR_GRPC_PORT is not set: no sidecar to test against")
	}
	store := os.Getenv("PAYMENT_TEST_STATE_STORE")
	if store == "" {
		store = storeName
	}
	client, err := sidecar.NewClient(sidecar.Config{Host: "127.0.0.1", GRPCPort: port})
	if err != nil {
		t.Fatalf("dapr client: %v", err)
	}
	t.Cleanup(client.Close)
	repo := daprstore.New(daprstate.New(client, store))

	paymenttest.RunContract(t, func(*testing.T) payment.Repository { return repo })
}
