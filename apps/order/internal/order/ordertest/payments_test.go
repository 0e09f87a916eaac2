package ordertest_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
)

// The fake answers as the payment app does (apps/payment: TestDeclinedPaymentDoesNotBlockLaterAttempts):
// the token decides, a decline is not final, a success is.
func TestPaymentsAnswerLikeThePaymentApp(t *testing.T) {
	t.Parallel()
	type attempt struct {
		mode, token string
		want        string // status answered; "" for an error
	}
	tests := []struct {
		name       string
		attempts   []attempt
		wantLookup string // status Lookup finds; "" for none
	}{
		{
			name:       "declined, then another card succeeds",
			attempts:   []attempt{{"succeeded", "tok_declined", "declined"}, {"succeeded", "tok_ok", "succeeded"}},
			wantLookup: "succeeded",
		},
		{
			name:       "a success is final whatever the token",
			attempts:   []attempt{{"succeeded", "tok_ok", "succeeded"}, {"succeeded", "tok_declined", "succeeded"}, {"declined", "tok_ok", "succeeded"}},
			wantLookup: "succeeded",
		},
		{
			name:       "a declined card mode declines every token, and stays retryable",
			attempts:   []attempt{{"declined", "tok_ok", "declined"}, {"succeeded", "tok_ok", "succeeded"}},
			wantLookup: "succeeded",
		},
		{
			name:       "a decline is looked up as a decline",
			attempts:   []attempt{{"succeeded", "tok_declined", "declined"}},
			wantLookup: "declined",
		},
		{
			name:     "unavailable records nothing",
			attempts: []attempt{{"unavailable", "tok_ok", ""}},
		},
		{
			name:       "a lost answer after a decline still charges",
			attempts:   []attempt{{"succeeded", "tok_declined", "declined"}, {"lost", "tok_ok", ""}, {"succeeded", "tok_declined", "succeeded"}},
			wantLookup: "succeeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			p := ordertest.NewPayments()
			for i, a := range tt.attempts {
				p.SetMode(a.mode)
				res, err := p.Charge(ctx, "o1", 100, a.token)
				switch {
				case a.want == "" && !errors.Is(err, ordertest.ErrPaymentDown):
					t.Errorf("attempt %d: error = %v, want %v", i, err, ordertest.ErrPaymentDown)
				case a.want != "" && (err != nil || res.Status != a.want):
					t.Errorf("attempt %d: Charge() = %+v, %v; want status %q", i, res, err, a.want)
				}
			}
			res, found, err := p.Lookup(ctx, "o1")
			if err != nil {
				t.Fatalf("Lookup(): %v", err)
			}
			if diff := cmp.Diff(res, order.ChargeResult{Status: tt.wantLookup}); diff != "" || found != (tt.wantLookup != "") {
				t.Errorf("Lookup() = %+v, found %t; want status %q (-got +want):\n%s", res, found, tt.wantLookup, diff)
			}
		})
	}
}
