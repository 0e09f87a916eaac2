package daprstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/apps/payment/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment/paymenttest"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

const storeName = "statestore"

// errOutage is an outage of the sidecar.
var errOutage = daprstatetest.ErrUnavailable

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestContract(t *testing.T) {
	t.Parallel()
	paymenttest.RunContract(t, func(*testing.T) payment.Repository {
		return daprstore.New(daprstate.New(daprstatetest.NewClient(), storeName))
	})
}

func TestKeysAndStoredDocuments(t *testing.T) {
	t.Parallel()
	fc := daprstatetest.NewClient()
	repo := daprstore.New(daprstate.New(fc, storeName))
	ctx := testContext(t)
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

	if _, err := repo.UpdateCharge(ctx, "o1", func(c *payment.Charge, _ bool) error {
		*c = payment.Charge{ChargeID: "ch_1", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 1999, CreatedAt: at}
		return nil
	}); err != nil {
		t.Fatalf("UpdateCharge(): %v", err)
	}
	if _, _, err := repo.CreateRefund(ctx, payment.Refund{RefundID: "re_1", OrderID: "o1", Status: payment.StatusRefunded, AmountCents: 1999, CreatedAt: at}); err != nil {
		t.Fatalf("CreateRefund(): %v", err)
	}

	tests := []struct {
		key  string
		want map[string]any
	}{
		{"charge:o1", map[string]any{"charge_id": "ch_1", "order_id": "o1", "status": "succeeded", "amount_cents": 1999.0, "created_at": "2025-06-01T12:00:00Z"}},
		{"refund:o1", map[string]any{"refund_id": "re_1", "order_id": "o1", "status": "refunded", "amount_cents": 1999.0, "created_at": "2025-06-01T12:00:00Z"}},
	}
	for _, tt := range tests {
		raw, _ := fc.Value(storeName, tt.key)
		var got map[string]any
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("decode %s (%q): %v", tt.key, raw, err)
		}
		if diff := cmp.Diff(got, tt.want); diff != "" {
			t.Errorf("%s mismatch (-got +want):\n%s", tt.key, diff)
		}
	}
	if got := len(fc.Keys(storeName, "")); got != 2 {
		t.Errorf("keys = %v, want exactly charge:o1 and refund:o1", fc.Keys(storeName, ""))
	}
}

func TestOutages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		getErr  error
		saveErr error
		call    func(ctx context.Context, r *daprstore.Repository) error
	}{
		{
			name: "charge read", getErr: errOutage,
			call: func(ctx context.Context, r *daprstore.Repository) error { _, err := r.Charge(ctx, "o1"); return err },
		},
		{
			name: "refund read", getErr: errOutage,
			call: func(ctx context.Context, r *daprstore.Repository) error { _, err := r.Refund(ctx, "o1"); return err },
		},
		{
			name: "charge update read", getErr: errOutage,
			call: func(ctx context.Context, r *daprstore.Repository) error {
				_, err := r.UpdateCharge(ctx, "o1", func(c *payment.Charge, _ bool) error { c.OrderID = "o1"; return nil })
				return err
			},
		},
		{
			name: "charge update write", saveErr: errOutage,
			call: func(ctx context.Context, r *daprstore.Repository) error {
				_, err := r.UpdateCharge(ctx, "o1", func(c *payment.Charge, _ bool) error { c.OrderID = "o1"; return nil })
				return err
			},
		},
		{
			name: "refund create", saveErr: errOutage,
			call: func(ctx context.Context, r *daprstore.Repository) error {
				_, _, err := r.CreateRefund(ctx, payment.Refund{OrderID: "o1"})
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := daprstatetest.NewClient()
			fc.SetGetErr(tt.getErr)
			fc.SetSaveErr(tt.saveErr)

			err := tt.call(testContext(t), daprstore.New(daprstate.New(fc, storeName)))

			if !errors.Is(err, errOutage) {
				t.Errorf("error = %v, want it to wrap the outage", err)
			}
			if errors.Is(err, payment.ErrChargeNotFound) || errors.Is(err, payment.ErrRefundNotFound) || errors.Is(err, daprstate.ErrExists) {
				t.Errorf("error = %v: an outage must not look like a missing or existing record", err)
			}
		})
	}
}

// The whole stack (service, adapter, daprstate) over the Redis-like fake, with half the
// callers declined. In one replica the calls are serialized, so no write is ever lost: a
// decline may land first, then the one success. Across replicas the barrier holds every
// caller after its read until all have seen "no charge", so all of them attempt the
// first-write create and all but one lose it; the losers decide again against the winner.
// Either way the key ends with one succeeded charge, and only a succeeded charge and
// at most one decline before it were ever written.
func TestConcurrentChargesThroughTheStore(t *testing.T) {
	t.Parallel()
	const n = paymenttest.Concurrency
	tests := []struct {
		name         string
		replicas     int
		minAttempts  int
		lostAttempts bool
	}{
		{name: "in one replica", replicas: 1, minAttempts: 1},
		{name: "across replicas", replicas: n, minAttempts: n, lostAttempts: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := daprstatetest.NewClient()
			if tt.replicas > 1 {
				// Only the first n reads (the look-ups) wait; the losers' re-reads pass.
				b := paymenttest.NewBarrier(n)
				fc.AfterGet = func(ctx context.Context, _ string) { b.Wait(ctx) }
			}
			replicas := make([]*payment.Service, tt.replicas)
			for i := range replicas {
				svc, err := payment.NewService(daprstore.New(daprstate.New(fc, storeName)), payment.Faults{}, noop.NewMeterProvider().Meter("payment"))
				if err != nil {
					t.Fatalf("NewService: %v", err)
				}
				replicas[i] = svc
			}
			ctx := testContext(t)

			results := make([]payment.Charge, n)
			errs := make([]error, n)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					token := "tok_ok"
					if i%2 == 0 {
						token = "tok_declined"
					}
					results[i], errs[i] = replicas[i%tt.replicas].Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: token})
				})
			}
			close(start)
			wg.Wait()

			raw, _ := fc.Value(storeName, "charge:o1")
			var stored payment.Charge
			if err := json.Unmarshal(raw, &stored); err != nil {
				t.Fatalf("decode stored charge: %v", err)
			}
			if stored.Status != payment.StatusSucceeded {
				t.Fatalf("stored charge %+v, want a succeeded one", stored)
			}
			for i := range n {
				switch {
				case errs[i] != nil:
					t.Errorf("call %d: %v", i, errs[i])
				case results[i].Status == payment.StatusDeclined && i%2 == 0:
				default:
					if diff := cmp.Diff(results[i], stored); diff != "" {
						t.Errorf("call %d answered another charge than the stored success (-got +want):\n%s", i, diff)
					}
				}
			}
			saves, attempts := len(fc.Writes(storeName, "")), fc.SaveCalls()
			if saves < 1 || saves > 2 || attempts < tt.minAttempts || (!tt.lostAttempts && attempts != saves) {
				t.Errorf("writes = %d of %d attempts, want 1 or 2 of at least %d (lost attempts allowed: %t)", saves, attempts, tt.minAttempts, tt.lostAttempts)
			}
		})
	}
}
