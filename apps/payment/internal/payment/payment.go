// Package payment is a simulated payment provider: it charges and refunds orders. Per order
// id there is at most one succeeded charge and at most one refund, ever.
//
// A charge record per order ("charge:<order_id>") holds the order's latest attempt. A declined
// attempt is not final: the owner may pay again with another card, and a later attempt
// replaces the decline. A succeeded charge is final: every later attempt, whatever its token
// or amount, answers that charge, so a caller retrying after a timeout learns what happened
// instead of causing a second charge. The record changes only through an optimistic
// concurrency check (Repository.UpdateCharge), so of two attempts that race over one decline
// (or over no record) one is stored and the other re-reads and answers it. Refunds are written
// once with a first-write create on their own key ("refund:<order_id>").
//
// An in-process lock per order id (keyLock) keeps one replica's own concurrent calls from
// losing writes, which the sidecar would retry and count against the state store.
//
// Expected business outcomes are 200 answers (a declined card is a charge with status
// "declined"): Dapr's circuit breaker counts every non-2xx answer as a failure, and a wave of
// declines must not open the breaker in front of this app.
package payment

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Errors of the payment domain.
var (
	ErrChargeNotFound = problem.New(problem.CodeNotFound, "no charge for this order")
	ErrRefundNotFound = problem.New(problem.CodeNotFound, "no refund for this order")
	ErrNotRefundable  = problem.New(problem.CodeConflict, "the order has no succeeded charge to refund")
	// ErrUnavailable is the injected failure (PAYMENT_FAILURE_RATE).
	ErrUnavailable = problem.New(problem.CodeUnavailable, "the payment provider is unavailable (injected failure)")
)

// Charge statuses.
const (
	StatusSucceeded = "succeeded"
	StatusDeclined  = "declined"
)

// StatusRefunded is the status of every refund.
const StatusRefunded = "refunded"

// TokenDeclined is the payment token whose charges are declined; every other token succeeds.
const TokenDeclined = "tok_declined"

// Limits on input.
const (
	MaxOrderIDLen  = 128
	MaxTokenLen    = 256
	MaxAmountCents = 1_000_000_000_000 // ten billion currency units
)

// Charge is the stored (and wire) form of an order's charge.
type Charge struct {
	ChargeID    string    `json:"charge_id"`
	OrderID     string    `json:"order_id"`
	Status      string    `json:"status"`
	AmountCents int64     `json:"amount_cents"`
	CreatedAt   time.Time `json:"created_at"`
}

// Refund is the stored (and wire) form of an order's refund.
type Refund struct {
	RefundID    string    `json:"refund_id"`
	OrderID     string    `json:"order_id"`
	Status      string    `json:"status"`
	AmountCents int64     `json:"amount_cents"`
	CreatedAt   time.Time `json:"created_at"`
}

// ChargeRequest is the input of Service.Charge.
type ChargeRequest struct {
	OrderID      string `json:"order_id"`
	AmountCents  int64  `json:"amount_cents"`
	PaymentToken string `json:"payment_token"`
}

// Validate checks the input.
func (r ChargeRequest) Validate() error {
	var f []problem.FieldError
	if fe, ok := checkOrderID(r.OrderID); !ok {
		f = append(f, fe)
	}
	if r.AmountCents < 1 || r.AmountCents > MaxAmountCents {
		f = append(f, problem.FieldError{Field: "amount_cents", Reason: fmt.Sprintf("must be between 1 and %d", int64(MaxAmountCents))})
	}
	switch {
	case strings.TrimSpace(r.PaymentToken) == "":
		f = append(f, problem.FieldError{Field: "payment_token", Reason: "is required"})
	case len(r.PaymentToken) > MaxTokenLen:
		f = append(f, problem.FieldError{Field: "payment_token", Reason: fmt.Sprintf("must be at most %d bytes", MaxTokenLen)})
	}
	if len(f) > 0 {
		return problem.Invalid(f...)
	}
	return nil
}

// RefundRequest is the input of Service.Refund.
type RefundRequest struct {
	OrderID string `json:"order_id"`
}

// Validate checks the input.
func (r RefundRequest) Validate() error {
	if fe, ok := checkOrderID(r.OrderID); !ok {
		return problem.Invalid(fe)
	}
	return nil
}

// checkOrderID accepts 1..MaxOrderIDLen characters of [A-Za-z0-9._:-]. The id becomes part of a
// state key and a URL path, so separators ("||" is Dapr's key prefix separator, "/" a path
// separator), spaces and control characters are refused.
func checkOrderID(id string) (problem.FieldError, bool) {
	switch {
	case id == "":
		return problem.FieldError{Field: "order_id", Reason: "is required"}, false
	case len(id) > MaxOrderIDLen:
		return problem.FieldError{Field: "order_id", Reason: fmt.Sprintf("must be at most %d characters", MaxOrderIDLen)}, false
	}
	for _, c := range id {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == ':' || c == '-'
		if !ok {
			return problem.FieldError{Field: "order_id", Reason: "may hold only letters, digits and . _ : -"}, false
		}
	}
	return problem.FieldError{}, true
}

// ErrNoChange tells Repository.UpdateCharge that the update function decided to keep the
// stored charge as it is.
var ErrNoChange = errors.New("payment: no change")

// Repository stores charges and refunds, one record of each per order id.
type Repository interface {
	// Charge returns the charge of an order or ErrChargeNotFound.
	Charge(ctx context.Context, orderID string) (Charge, error)
	// UpdateCharge reads the order's charge (found=false when it has none), applies fn and
	// stores the result only if nobody stored a charge of the order since the read;
	// otherwise it reads again and re-runs fn. When fn returns ErrNoChange nothing is
	// written and the stored charge is returned (the zero Charge when there is none); any
	// other error of fn is returned as is. It returns the charge the store now holds.
	UpdateCharge(ctx context.Context, orderID string, fn func(c *Charge, found bool) error) (Charge, error)
	// Refund returns the refund of an order or ErrRefundNotFound.
	Refund(ctx context.Context, orderID string) (Refund, error)
	// CreateRefund stores r unless the order has a refund; then it returns the existing one
	// and created=false.
	CreateRefund(ctx context.Context, r Refund) (existing Refund, created bool, err error)
}

// Faults makes the provider slow or flaky on purpose, so tests can exercise the callers'
// timeouts, retries and circuit breakers.
type Faults struct {
	// Latency is added before every charge and refund.
	Latency time.Duration
	// FailureRate is the fraction (0..1) of charges and refunds that answer ErrUnavailable
	// without reading or writing anything.
	FailureRate float64
}

// Validate checks the settings.
func (f Faults) Validate() error {
	if f.Latency < 0 {
		return fmt.Errorf("payment latency %s: must not be negative", f.Latency)
	}
	if !(f.FailureRate >= 0 && f.FailureRate <= 1) { // also refuses NaN
		return fmt.Errorf("payment failure rate %v: must be between 0 and 1", f.FailureRate)
	}
	return nil
}
