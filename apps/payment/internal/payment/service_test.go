package payment_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/apps/payment/internal/payment/paymenttest"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

var (
	t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour)
)

var errOutage = errors.New("rpc error: code = Unavailable desc = connection refused")

type fixture struct {
	svc    *payment.Service
	repo   *paymenttest.Memory
	reader *sdkmetric.ManualReader
}

// newFixture returns a service at t1 over an empty in-memory store, issuing ids "1", "2", …
func newFixture(t *testing.T, faults payment.Faults) *fixture {
	t.Helper()
	repo := paymenttest.NewMemory()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	svc := newServiceWithMeter(t, repo, faults, mp)
	return &fixture{svc: svc, repo: repo, reader: reader}
}

// newService returns a service at t1 over repo, as one replica of the app.
func newService(t *testing.T, repo payment.Repository, faults payment.Faults) *payment.Service {
	t.Helper()
	return newServiceWithMeter(t, repo, faults, sdkmetric.NewMeterProvider())
}

func newServiceWithMeter(t *testing.T, repo payment.Repository, faults payment.Faults, mp *sdkmetric.MeterProvider) *payment.Service {
	t.Helper()
	svc, err := payment.NewService(repo, faults, mp.Meter("payment"))
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	payment.SetNow(svc, func() time.Time { return t1 })
	var n atomic.Int64
	payment.SetNewID(svc, func() string { return strconv.FormatInt(n.Add(1), 10) })
	return svc
}

// counts returns the counter's values keyed by their encoded attributes ("replayed=false,status=declined").
func (f *fixture) counts(t *testing.T, name string) map[string]int64 {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := f.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				t.Fatalf("metric %s is a %T, want an int64 sum", name, m.Data)
			}
			for _, dp := range sum.DataPoints {
				out[dp.Attributes.Encoded(attribute.DefaultEncoder())] += dp.Value
			}
		}
	}
	return out
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkErr compares err with the wanted code and, for validation errors, the wanted fields.
func checkErr(t *testing.T, err error, wantCode problem.Code, wantFields []problem.FieldError) {
	t.Helper()
	if wantCode == "" {
		if err != nil {
			t.Fatalf("error = %v, want none", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("error = nil, want code %q", wantCode)
	}
	if got := problem.CodeOf(err); got != wantCode {
		t.Fatalf("error code = %q (%v), want %q", got, err, wantCode)
	}
	if wantFields != nil {
		var pe *problem.Error
		errors.As(err, &pe)
		if diff := cmp.Diff(pe.Fields, wantFields); diff != "" {
			t.Errorf("field errors mismatch (-got +want):\n%s", diff)
		}
	}
}

func TestMemoryContract(t *testing.T) {
	t.Parallel()
	paymenttest.RunContract(t, func(*testing.T) payment.Repository { return paymenttest.NewMemory() })
}

func TestCharge(t *testing.T) {
	t.Parallel()
	earlier := payment.Charge{ChargeID: "ch_earlier", OrderID: "o1", Status: payment.StatusDeclined, AmountCents: 500, CreatedAt: t0}
	earlierOK := payment.Charge{ChargeID: "ch_earlier", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 500, CreatedAt: t0}
	tests := []struct {
		name       string
		seed       *payment.Charge
		outage     bool
		in         payment.ChargeRequest
		want       payment.Charge
		wantCode   problem.Code
		wantFields []problem.FieldError
		wantWrites int
	}{
		{
			name:       "tok_ok succeeds",
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_ok"},
			want:       payment.Charge{ChargeID: "ch_1", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 1999, CreatedAt: t1},
			wantWrites: 1,
		},
		{
			name:       "any other token succeeds",
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_visa_4242"},
			want:       payment.Charge{ChargeID: "ch_1", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 1999, CreatedAt: t1},
			wantWrites: 1,
		},
		{
			name:       "tok_declined is a declined charge, not an error",
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_declined"},
			want:       payment.Charge{ChargeID: "ch_1", OrderID: "o1", Status: payment.StatusDeclined, AmountCents: 1999, CreatedAt: t1},
			wantWrites: 1,
		},
		{
			name:       "a later call with another token replaces a decline",
			seed:       &earlier,
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_ok"},
			want:       payment.Charge{ChargeID: "ch_1", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 1999, CreatedAt: t1},
			wantWrites: 1,
		},
		{
			name: "a later decline keeps the earlier decline",
			seed: &earlier,
			in:   payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_declined"},
			want: earlier,
		},
		{
			name: "a later call with tok_declined gets the earlier success",
			seed: &earlierOK,
			in:   payment.ChargeRequest{OrderID: "o1", AmountCents: 500, PaymentToken: "tok_declined"},
			want: earlierOK,
		},
		{
			name: "a later call with another amount gets the earlier success",
			seed: &earlierOK,
			in:   payment.ChargeRequest{OrderID: "o1", AmountCents: 999, PaymentToken: "tok_ok"},
			want: earlierOK,
		},
		{
			name:     "every field missing",
			in:       payment.ChargeRequest{},
			wantCode: problem.CodeValidation,
			wantFields: []problem.FieldError{
				{Field: "order_id", Reason: "is required"},
				{Field: "amount_cents", Reason: "must be between 1 and 1000000000000"},
				{Field: "payment_token", Reason: "is required"},
			},
		},
		{
			name:       "order id with a key separator",
			in:         payment.ChargeRequest{OrderID: "o1||x", AmountCents: 1, PaymentToken: "tok_ok"},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "order_id", Reason: "may hold only letters, digits and . _ : -"}},
		},
		{
			name:       "order id too long",
			in:         payment.ChargeRequest{OrderID: strings.Repeat("9", payment.MaxOrderIDLen+1), AmountCents: 1, PaymentToken: "tok_ok"},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "order_id", Reason: "must be at most 128 characters"}},
		},
		{
			name:       "negative amount",
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: -5, PaymentToken: "tok_ok"},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "amount_cents", Reason: "must be between 1 and 1000000000000"}},
		},
		{
			name:       "amount too large",
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: payment.MaxAmountCents + 1, PaymentToken: "tok_ok"},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "amount_cents", Reason: "must be between 1 and 1000000000000"}},
		},
		{
			name:       "blank token",
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: 1, PaymentToken: "  "},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "payment_token", Reason: "is required"}},
		},
		{
			name:       "token too long",
			in:         payment.ChargeRequest{OrderID: "o1", AmountCents: 1, PaymentToken: strings.Repeat("t", payment.MaxTokenLen+1)},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "payment_token", Reason: "must be at most 256 bytes"}},
		},
		{
			name:     "store outage is an internal error",
			outage:   true,
			in:       payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_ok"},
			wantCode: problem.CodeInternal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, payment.Faults{})
			if tt.seed != nil {
				f.repo.PutCharge(*tt.seed)
			}
			if tt.outage {
				f.repo.Fail(errOutage)
			}

			got, err := f.svc.Charge(testContext(t), tt.in)

			checkErr(t, err, tt.wantCode, tt.wantFields)
			if tt.outage && !errors.Is(err, errOutage) {
				t.Errorf("error = %v, want it to wrap the outage", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Charge() mismatch (-got +want):\n%s", diff)
			}
			if got := f.repo.Writes(); got != tt.wantWrites {
				t.Errorf("records written = %d, want %d", got, tt.wantWrites)
			}
		})
	}
}

func TestChargeIdempotentAcrossCalls(t *testing.T) {
	t.Parallel()
	f := newFixture(t, payment.Faults{})
	ctx := testContext(t)

	first, err := f.svc.Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_ok"})
	if err != nil {
		t.Fatalf("first Charge(): %v", err)
	}
	second, err := f.svc.Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: "tok_ok"})
	if err != nil {
		t.Fatalf("second Charge(): %v", err)
	}

	if diff := cmp.Diff(second, first); diff != "" {
		t.Errorf("second Charge() mismatch (-got +want):\n%s", diff)
	}
	if first.Status != payment.StatusSucceeded {
		t.Errorf("status = %q, want %q", first.Status, payment.StatusSucceeded)
	}
	if got := f.repo.Writes(); got != 1 {
		t.Errorf("records written = %d, want 1", got)
	}
}

// Loss window 6 (issue 8): a declined attempt is not the order's final charge. The owner may
// pay again with another card; only a succeeded charge is final, and every later attempt,
// whatever its token, answers that one charge.
func TestDeclinedPaymentDoesNotBlockLaterAttempts(t *testing.T) {
	t.Parallel()
	declined := func(id string) payment.Charge {
		return payment.Charge{ChargeID: id, OrderID: "o1", Status: payment.StatusDeclined, AmountCents: 1999, CreatedAt: t1}
	}
	succeeded := func(id string) payment.Charge {
		return payment.Charge{ChargeID: id, OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 1999, CreatedAt: t1}
	}
	tests := []struct {
		name       string
		tokens     []string         // attempts, in order
		want       []payment.Charge // answer of each attempt
		wantStored payment.Charge
	}{
		{
			name:       "declined, then another card succeeds",
			tokens:     []string{"tok_declined", "tok_ok"},
			want:       []payment.Charge{declined("ch_1"), succeeded("ch_2")},
			wantStored: succeeded("ch_2"),
		},
		{
			name:       "declined twice, then a success",
			tokens:     []string{"tok_declined", "tok_declined", "tok_ok"},
			want:       []payment.Charge{declined("ch_1"), declined("ch_1"), succeeded("ch_2")},
			wantStored: succeeded("ch_2"),
		},
		{
			name:       "a success is final: later attempts get it, whatever the token",
			tokens:     []string{"tok_declined", "tok_ok", "tok_declined", "tok_visa"},
			want:       []payment.Charge{declined("ch_1"), succeeded("ch_2"), succeeded("ch_2"), succeeded("ch_2")},
			wantStored: succeeded("ch_2"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, payment.Faults{})
			ctx := testContext(t)

			var got []payment.Charge
			for _, tok := range tt.tokens {
				c, err := f.svc.Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: tok})
				if err != nil {
					t.Fatalf("Charge(%s): %v", tok, err)
				}
				got = append(got, c)
			}

			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("answers mismatch (-got +want):\n%s", diff)
			}
			stored, err := f.svc.GetCharge(ctx, "o1")
			if err != nil {
				t.Fatalf("GetCharge(): %v", err)
			}
			if diff := cmp.Diff(stored, tt.wantStored); diff != "" {
				t.Errorf("stored charge mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// Concurrent calls for one order in one replica are serialized: no write is ever lost to
// another, at most two land (a decline, then the success that ends it), and every call that
// succeeded answers the one stored charge.
func TestConcurrentChargesInOneReplica(t *testing.T) {
	t.Parallel()
	const n = paymenttest.Concurrency
	f := newFixture(t, payment.Faults{})
	ctx := testContext(t)

	results, errs := concurrently(n, func(i int) (payment.Charge, error) {
		return f.svc.Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: tokenFor(i)})
	})

	stored, err := f.repo.Charge(ctx, "o1")
	if err != nil {
		t.Fatalf("stored charge: %v", err)
	}
	checkOneSuccess(t, results, errs, stored)
	if writes, calls := f.repo.Writes(), f.repo.WriteCalls(); calls != writes || writes > 2 {
		t.Errorf("writes = %d of %d attempts, want every attempt stored and at most 2", writes, calls)
	}
	if got := f.counts(t, "payment_charges_total")["replayed=false,status=succeeded"]; got != 1 {
		t.Errorf("new succeeded charges counted = %d, want 1", got)
	}
}

// Replicas do not share the lock. Each caller runs in its own replica and the barrier holds
// every one until all have read "no charge yet", so all of them write: the store must end with
// one succeeded charge and every caller that succeeded must answer it.
func TestConcurrentChargesAcrossReplicas(t *testing.T) {
	t.Parallel()
	const n = paymenttest.Concurrency
	repo := paymenttest.NewMemory()
	repo.AfterRead = paymenttest.NewBarrier(n).Wait
	replicas := make([]*payment.Service, n)
	for i := range replicas {
		replicas[i] = newService(t, repo, payment.Faults{})
		payment.SetNewID(replicas[i], func() string { return fmt.Sprintf("replica%d", i) })
	}
	ctx := testContext(t)

	results, errs := concurrently(n, func(i int) (payment.Charge, error) {
		return replicas[i].Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1999, PaymentToken: tokenFor(i)})
	})

	stored, err := repo.Charge(ctx, "o1")
	if err != nil {
		t.Fatalf("stored charge: %v", err)
	}
	checkOneSuccess(t, results, errs, stored)
	if got := repo.WriteCalls(); got < n {
		t.Errorf("write calls = %d, want at least %d (the barrier should force every caller to write)", got, n)
	}
	if got := repo.Writes(); got > 2 {
		t.Errorf("records written = %d, want at most 2 (a decline, then the success)", got)
	}
}

// checkOneSuccess checks the answers of concurrent attempts with mixed tokens: the order's
// stored charge succeeded, and every answer is either that charge or a decline.
func checkOneSuccess(t *testing.T, results []payment.Charge, errs []error, stored payment.Charge) {
	t.Helper()
	if stored.Status != payment.StatusSucceeded {
		t.Fatalf("stored charge %+v, want a succeeded one", stored)
	}
	for i := range results {
		switch {
		case errs[i] != nil:
			t.Errorf("call %d: %v", i, errs[i])
		case results[i].Status == payment.StatusDeclined && tokenFor(i) == payment.TokenDeclined:
		default:
			if diff := cmp.Diff(results[i], stored); diff != "" {
				t.Errorf("call %d answered another charge than the stored success (-got +want):\n%s", i, diff)
			}
		}
	}
}

func tokenFor(i int) string {
	if i%2 == 1 {
		return "tok_declined"
	}
	return "tok_ok"
}

// concurrently runs fn(0..n-1) from n goroutines released together.
func concurrently[T any](n int, fn func(i int) (T, error)) ([]T, []error) {
	results := make([]T, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i], errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return results, errs
}

func checkAnswers[T any](t *testing.T, results []T, errs []error, stored T) {
	t.Helper()
	for i := range results {
		if errs[i] != nil {
			t.Errorf("call %d: %v", i, errs[i])
			continue
		}
		if diff := cmp.Diff(results[i], stored); diff != "" {
			t.Errorf("call %d answered another record than the stored one (-got +want):\n%s", i, diff)
		}
	}
}

func TestRefund(t *testing.T) {
	t.Parallel()
	succeeded := payment.Charge{ChargeID: "ch_9", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 4200, CreatedAt: t0}
	declined := payment.Charge{ChargeID: "ch_9", OrderID: "o1", Status: payment.StatusDeclined, AmountCents: 4200, CreatedAt: t0}
	earlier := payment.Refund{RefundID: "re_earlier", OrderID: "o1", Status: payment.StatusRefunded, AmountCents: 4200, CreatedAt: t0}
	tests := []struct {
		name       string
		charge     *payment.Charge
		refund     *payment.Refund
		outage     bool
		in         payment.RefundRequest
		want       payment.Refund
		wantCode   problem.Code
		wantFields []problem.FieldError
		wantWrites int
	}{
		{
			name:       "succeeded charge is refunded in full",
			charge:     &succeeded,
			in:         payment.RefundRequest{OrderID: "o1"},
			want:       payment.Refund{RefundID: "re_1", OrderID: "o1", Status: payment.StatusRefunded, AmountCents: 4200, CreatedAt: t1},
			wantWrites: 1,
		},
		{
			name:   "a second refund returns the first",
			charge: &succeeded,
			refund: &earlier,
			in:     payment.RefundRequest{OrderID: "o1"},
			want:   earlier,
		},
		{
			name:     "no charge is a conflict",
			in:       payment.RefundRequest{OrderID: "o1"},
			wantCode: problem.CodeConflict,
		},
		{
			name:     "declined charge is a conflict",
			charge:   &declined,
			in:       payment.RefundRequest{OrderID: "o1"},
			wantCode: problem.CodeConflict,
		},
		{
			name:       "missing order id",
			in:         payment.RefundRequest{},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "order_id", Reason: "is required"}},
		},
		{
			name:       "order id with a slash",
			in:         payment.RefundRequest{OrderID: "o/1"},
			wantCode:   problem.CodeValidation,
			wantFields: []problem.FieldError{{Field: "order_id", Reason: "may hold only letters, digits and . _ : -"}},
		},
		{
			name:     "store outage is an internal error",
			charge:   &succeeded,
			outage:   true,
			in:       payment.RefundRequest{OrderID: "o1"},
			wantCode: problem.CodeInternal,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, payment.Faults{})
			if tt.charge != nil {
				f.repo.PutCharge(*tt.charge)
			}
			if tt.refund != nil {
				f.repo.PutRefund(*tt.refund)
			}
			if tt.outage {
				f.repo.Fail(errOutage)
			}

			got, err := f.svc.Refund(testContext(t), tt.in)

			checkErr(t, err, tt.wantCode, tt.wantFields)
			if tt.wantCode == problem.CodeConflict && !errors.Is(err, payment.ErrNotRefundable) {
				t.Errorf("error = %v, want %v", err, payment.ErrNotRefundable)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("Refund() mismatch (-got +want):\n%s", diff)
			}
			if got := f.repo.Writes(); got != tt.wantWrites {
				t.Errorf("records written = %d, want %d", got, tt.wantWrites)
			}
		})
	}
}

func TestConcurrentRefunds(t *testing.T) {
	t.Parallel()
	const n = paymenttest.Concurrency
	tests := []struct {
		name           string
		replicas       int
		wantWriteCalls int
	}{
		{name: "in one replica", replicas: 1, wantWriteCalls: 1},
		{name: "across replicas", replicas: n, wantWriteCalls: n},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := paymenttest.NewMemory()
			repo.PutCharge(payment.Charge{ChargeID: "ch_9", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 4200, CreatedAt: t0})
			if tt.replicas > 1 {
				// The first n reads are the refund look-ups: every caller sees "no refund yet".
				repo.AfterRead = paymenttest.NewBarrier(n).Wait
			}
			replicas := make([]*payment.Service, tt.replicas)
			for i := range replicas {
				replicas[i] = newService(t, repo, payment.Faults{})
				payment.SetNewID(replicas[i], func() string { return fmt.Sprintf("replica%d", i) })
			}
			ctx := testContext(t)

			results, errs := concurrently(n, func(i int) (payment.Refund, error) {
				return replicas[i%tt.replicas].Refund(ctx, payment.RefundRequest{OrderID: "o1"})
			})

			stored, err := repo.Refund(ctx, "o1")
			if err != nil {
				t.Fatalf("stored refund: %v", err)
			}
			checkAnswers(t, results, errs, stored)
			if _, refunds := repo.Len(); refunds != 1 {
				t.Errorf("refunds stored = %d, want 1", refunds)
			}
			if got := repo.WriteCalls(); got != tt.wantWriteCalls {
				t.Errorf("write calls = %d, want %d", got, tt.wantWriteCalls)
			}
		})
	}
}

func TestGetRecords(t *testing.T) {
	t.Parallel()
	charge := payment.Charge{ChargeID: "ch_9", OrderID: "o1", Status: payment.StatusSucceeded, AmountCents: 4200, CreatedAt: t0}
	refund := payment.Refund{RefundID: "re_9", OrderID: "o1", Status: payment.StatusRefunded, AmountCents: 4200, CreatedAt: t0}
	tests := []struct {
		name     string
		get      func(ctx context.Context, s *payment.Service) (any, error)
		want     any
		wantCode problem.Code
	}{
		{
			name: "charge",
			get:  func(ctx context.Context, s *payment.Service) (any, error) { return s.GetCharge(ctx, "o1") },
			want: charge,
		},
		{
			name:     "unknown charge",
			get:      func(ctx context.Context, s *payment.Service) (any, error) { return s.GetCharge(ctx, "o2") },
			want:     payment.Charge{},
			wantCode: problem.CodeNotFound,
		},
		{
			name:     "charge of an invalid order id",
			get:      func(ctx context.Context, s *payment.Service) (any, error) { return s.GetCharge(ctx, "o 1") },
			want:     payment.Charge{},
			wantCode: problem.CodeNotFound,
		},
		{
			name: "refund",
			get:  func(ctx context.Context, s *payment.Service) (any, error) { return s.GetRefund(ctx, "o1") },
			want: refund,
		},
		{
			name:     "unknown refund",
			get:      func(ctx context.Context, s *payment.Service) (any, error) { return s.GetRefund(ctx, "o2") },
			want:     payment.Refund{},
			wantCode: problem.CodeNotFound,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, payment.Faults{})
			f.repo.PutCharge(charge)
			f.repo.PutRefund(refund)

			got, err := tt.get(testContext(t), f.svc)

			checkErr(t, err, tt.wantCode, nil)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("record mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFailureInjection(t *testing.T) {
	t.Parallel()
	const calls = 50
	tests := []struct {
		name         string
		rate         float64
		roll         func() float64 // nil: the real random source
		wantFailures int
	}{
		{name: "rate 1 fails every call", rate: 1, wantFailures: 2 * calls},
		{name: "rate 0 fails no call", rate: 0, wantFailures: 0},
		{name: "roll below the rate fails", rate: 0.5, roll: func() float64 { return 0.4999 }, wantFailures: 2 * calls},
		{name: "roll at the rate passes", rate: 0.5, roll: func() float64 { return 0.5 }, wantFailures: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, payment.Faults{FailureRate: tt.rate})
			if tt.roll != nil {
				payment.SetRoll(f.svc, tt.roll)
			}
			var reads atomic.Int64
			f.repo.AfterRead = func(context.Context) { reads.Add(1) }
			ctx := testContext(t)

			failures := 0
			for i := range calls {
				order := fmt.Sprintf("o%d", i)
				for _, call := range []func() error{
					func() error {
						_, err := f.svc.Charge(ctx, payment.ChargeRequest{OrderID: order, AmountCents: 100, PaymentToken: "tok_ok"})
						return err
					},
					func() error { _, err := f.svc.Refund(ctx, payment.RefundRequest{OrderID: order}); return err },
				} {
					err := call()
					switch {
					case errors.Is(err, payment.ErrUnavailable):
						if got := problem.CodeOf(err); got != problem.CodeUnavailable {
							t.Errorf("code = %q, want %q", got, problem.CodeUnavailable)
						}
						failures++
					case err != nil:
						t.Errorf("order %s: unexpected error %v", order, err)
					}
				}
			}

			if failures != tt.wantFailures {
				t.Errorf("injected failures = %d, want %d", failures, tt.wantFailures)
			}
			charges, refunds := f.repo.Len()
			if tt.wantFailures == 2*calls {
				if charges != 0 || refunds != 0 || reads.Load() != 0 {
					t.Errorf("store touched by failed calls: %d reads, %d charges, %d refunds; want none", reads.Load(), charges, refunds)
				}
			} else if charges != calls || refunds != calls {
				t.Errorf("stored %d charges and %d refunds, want %d of each", charges, refunds, calls)
			}
			got := f.counts(t, "payment_injected_failures_total")
			want := map[string]int64{}
			if tt.wantFailures > 0 {
				want = map[string]int64{"operation=charge": calls, "operation=refund": calls}
			}
			if diff := cmp.Diff(got, want); diff != "" {
				t.Errorf("injected failure counter mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestLatencyIsAddedBeforeEveryCall(t *testing.T) {
	t.Parallel()
	f := newFixture(t, payment.Faults{Latency: 250 * time.Millisecond})
	var mu sync.Mutex
	var slept []time.Duration
	payment.SetSleep(f.svc, func(_ context.Context, d time.Duration) error {
		mu.Lock()
		defer mu.Unlock()
		slept = append(slept, d)
		return nil
	})
	ctx := testContext(t)

	if _, err := f.svc.Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1, PaymentToken: "tok_ok"}); err != nil {
		t.Fatalf("Charge(): %v", err)
	}
	if _, err := f.svc.Refund(ctx, payment.RefundRequest{OrderID: "o1"}); err != nil {
		t.Fatalf("Refund(): %v", err)
	}
	if _, err := f.svc.GetCharge(ctx, "o1"); err != nil {
		t.Fatalf("GetCharge(): %v", err)
	}

	want := []time.Duration{250 * time.Millisecond, 250 * time.Millisecond}
	if diff := cmp.Diff(slept, want); diff != "" {
		t.Errorf("sleeps mismatch (-got +want):\n%s", diff)
	}
}

// The real sleep gives up when the caller does (Dapr's timeout cancels the request) and the
// call then does nothing.
func TestLatencyEndsWithTheCaller(t *testing.T) {
	t.Parallel()
	f := newFixture(t, payment.Faults{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()

	_, err := f.svc.Charge(ctx, payment.ChargeRequest{OrderID: "o1", AmountCents: 1, PaymentToken: "tok_ok"})

	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want %v", err, context.DeadlineExceeded)
	}
	if charges, _ := f.repo.Len(); charges != 0 {
		t.Errorf("charges stored = %d, want 0", charges)
	}
}

func TestInvalidFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		faults payment.Faults
	}{
		{"negative latency", payment.Faults{Latency: -time.Second}},
		{"negative rate", payment.Faults{FailureRate: -0.1}},
		{"rate above 1", payment.Faults{FailureRate: 1.1}},
		{"NaN rate", payment.Faults{FailureRate: math.NaN()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := tt.faults.Validate(); err == nil {
				t.Errorf("Validate(%+v) = nil, want an error", tt.faults)
			}
			mp := sdkmetric.NewMeterProvider()
			if _, err := payment.NewService(paymenttest.NewMemory(), tt.faults, mp.Meter("payment")); err == nil {
				t.Errorf("NewService(%+v) error = nil, want an error", tt.faults)
			}
		})
	}
}

func TestChargeAndRefundCounters(t *testing.T) {
	t.Parallel()
	f := newFixture(t, payment.Faults{})
	ctx := testContext(t)
	calls := []payment.ChargeRequest{
		{OrderID: "o1", AmountCents: 100, PaymentToken: "tok_ok"},
		{OrderID: "o1", AmountCents: 100, PaymentToken: "tok_ok"},
		{OrderID: "o2", AmountCents: 100, PaymentToken: "tok_declined"},
	}
	for _, in := range calls {
		if _, err := f.svc.Charge(ctx, in); err != nil {
			t.Fatalf("Charge(%+v): %v", in, err)
		}
	}
	for range 2 {
		if _, err := f.svc.Refund(ctx, payment.RefundRequest{OrderID: "o1"}); err != nil {
			t.Fatalf("Refund(): %v", err)
		}
	}

	wantCharges := map[string]int64{
		"replayed=false,status=succeeded": 1,
		"replayed=true,status=succeeded":  1,
		"replayed=false,status=declined":  1,
	}
	if diff := cmp.Diff(f.counts(t, "payment_charges_total"), wantCharges); diff != "" {
		t.Errorf("charge counter mismatch (-got +want):\n%s", diff)
	}
	wantRefunds := map[string]int64{"replayed=false": 1, "replayed=true": 1}
	if diff := cmp.Diff(f.counts(t, "payment_refunds_total"), wantRefunds); diff != "" {
		t.Errorf("refund counter mismatch (-got +want):\n%s", diff)
	}
}
