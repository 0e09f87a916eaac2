// Package paymenttest holds test helpers for the payment domain: an in-memory Repository with
// the first-write semantics of the Dapr state store, a barrier that forces concurrent callers
// into the same race window, and the contract suite every Repository implementation must pass.
package paymenttest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
)

// Memory is an in-memory payment.Repository. Like a first-write Create in the Dapr store, a
// create for an order that already has a record keeps the stored record and reports it.
type Memory struct {
	// AfterRead, when set, runs after every Charge and Refund read, before it returns (set it
	// before use). Holding readers there at a Barrier makes them all see the same state.
	AfterRead func(ctx context.Context)

	mu      sync.Mutex
	charges map[string]payment.Charge
	refunds map[string]payment.Refund
	creates int // creates that stored a record
	calls   int // create calls
	err     error
}

var _ payment.Repository = (*Memory)(nil)

// NewMemory returns an empty repository.
func NewMemory() *Memory {
	return &Memory{charges: map[string]payment.Charge{}, refunds: map[string]payment.Refund{}}
}

// Fail makes every later call fail with err (nil heals the store).
func (m *Memory) Fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// PutCharge stores c as if an earlier call had created it.
func (m *Memory) PutCharge(c payment.Charge) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.charges[c.OrderID] = c
}

// PutRefund stores r as if an earlier call had created it.
func (m *Memory) PutRefund(r payment.Refund) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.refunds[r.OrderID] = r
}

// Len returns the number of stored charges and refunds.
func (m *Memory) Len() (charges, refunds int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.charges), len(m.refunds)
}

// Creates returns the number of creates that stored a record.
func (m *Memory) Creates() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.creates
}

// CreateCalls returns the number of create calls, stored or not.
func (m *Memory) CreateCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// Charge implements payment.Repository.
func (m *Memory) Charge(ctx context.Context, orderID string) (payment.Charge, error) {
	m.mu.Lock()
	c, ok := m.charges[orderID]
	err := m.err
	m.mu.Unlock()
	if m.AfterRead != nil {
		m.AfterRead(ctx)
	}
	switch {
	case err != nil:
		return payment.Charge{}, err
	case !ok:
		return payment.Charge{}, payment.ErrChargeNotFound
	}
	return c, nil
}

// CreateCharge implements payment.Repository.
func (m *Memory) CreateCharge(_ context.Context, c payment.Charge) (payment.Charge, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return payment.Charge{}, false, m.err
	}
	if existing, ok := m.charges[c.OrderID]; ok {
		return existing, false, nil
	}
	m.charges[c.OrderID] = c
	m.creates++
	return c, true, nil
}

// Refund implements payment.Repository.
func (m *Memory) Refund(ctx context.Context, orderID string) (payment.Refund, error) {
	m.mu.Lock()
	r, ok := m.refunds[orderID]
	err := m.err
	m.mu.Unlock()
	if m.AfterRead != nil {
		m.AfterRead(ctx)
	}
	switch {
	case err != nil:
		return payment.Refund{}, err
	case !ok:
		return payment.Refund{}, payment.ErrRefundNotFound
	}
	return r, nil
}

// CreateRefund implements payment.Repository.
func (m *Memory) CreateRefund(_ context.Context, r payment.Refund) (payment.Refund, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return payment.Refund{}, false, m.err
	}
	if existing, ok := m.refunds[r.OrderID]; ok {
		return existing, false, nil
	}
	m.refunds[r.OrderID] = r
	m.creates++
	return r, true, nil
}

// Barrier holds its first n callers until all n have arrived (or their context ends), then
// lets everyone through. Holding n readers after their read makes all of them have seen "no
// record yet", so all of them go on to create: the race that first-write must settle.
type Barrier struct {
	mu      sync.Mutex
	waiting int
	open    chan struct{}
}

// NewBarrier returns a barrier for n callers.
func NewBarrier(n int) *Barrier {
	b := &Barrier{waiting: n, open: make(chan struct{})}
	if n <= 0 {
		close(b.open)
	}
	return b
}

// Wait blocks until n callers have called Wait or ctx ends; later callers pass at once.
func (b *Barrier) Wait(ctx context.Context) {
	b.mu.Lock()
	if b.waiting > 0 {
		b.waiting--
		if b.waiting == 0 {
			close(b.open)
		}
	}
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-ctx.Done():
	}
}

// Concurrency is how many goroutines the contract's race cases run.
const Concurrency = 20

// RunContract runs the behaviour every payment.Repository must show. newRepo may return the
// same store for every case: each case uses its own order ids.
func RunContract(t *testing.T, newRepo func(t *testing.T) payment.Repository) {
	t.Helper()
	at := time.Date(2025, 6, 1, 12, 0, 0, 123_000_000, time.UTC)
	charge := func(orderID, id string) payment.Charge {
		return payment.Charge{ChargeID: id, OrderID: orderID, Status: payment.StatusSucceeded, AmountCents: 1999, CreatedAt: at}
	}
	refund := func(orderID, id string) payment.Refund {
		return payment.Refund{RefundID: id, OrderID: orderID, Status: payment.StatusRefunded, AmountCents: 1999, CreatedAt: at}
	}

	t.Run("missing records are not found", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		if _, err := repo.Charge(ctx, order); !errors.Is(err, payment.ErrChargeNotFound) {
			t.Errorf("Charge() error = %v, want %v", err, payment.ErrChargeNotFound)
		}
		if _, err := repo.Refund(ctx, order); !errors.Is(err, payment.ErrRefundNotFound) {
			t.Errorf("Refund() error = %v, want %v", err, payment.ErrRefundNotFound)
		}
	})

	t.Run("create charge then read it", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		want := charge(order, "ch_1")
		got, created, err := repo.CreateCharge(ctx, want)
		if err != nil || !created {
			t.Fatalf("CreateCharge() = created %t, error %v; want created", created, err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("CreateCharge() mismatch (-got +want):\n%s", diff)
		}
		read, err := repo.Charge(ctx, order)
		if err != nil {
			t.Fatalf("Charge(): %v", err)
		}
		if diff := cmp.Diff(read, want); diff != "" {
			t.Errorf("Charge() mismatch (-got +want):\n%s", diff)
		}
	})

	t.Run("second charge create keeps the first", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		first := charge(order, "ch_first")
		if _, _, err := repo.CreateCharge(ctx, first); err != nil {
			t.Fatalf("first CreateCharge(): %v", err)
		}
		second := charge(order, "ch_second")
		second.Status = payment.StatusDeclined
		got, created, err := repo.CreateCharge(ctx, second)
		if err != nil || created {
			t.Fatalf("second CreateCharge() = created %t, error %v; want not created", created, err)
		}
		if diff := cmp.Diff(got, first); diff != "" {
			t.Errorf("second CreateCharge() mismatch (-got +want):\n%s", diff)
		}
		read, err := repo.Charge(ctx, order)
		if err != nil {
			t.Fatalf("Charge(): %v", err)
		}
		if diff := cmp.Diff(read, first); diff != "" {
			t.Errorf("stored charge mismatch (-got +want):\n%s", diff)
		}
	})

	t.Run("create refund then read it, apart from the charge", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		if _, _, err := repo.CreateCharge(ctx, charge(order, "ch_1")); err != nil {
			t.Fatalf("CreateCharge(): %v", err)
		}
		want := refund(order, "re_1")
		if _, created, err := repo.CreateRefund(ctx, want); err != nil || !created {
			t.Fatalf("CreateRefund() = created %t, error %v; want created", created, err)
		}
		again, created, err := repo.CreateRefund(ctx, refund(order, "re_2"))
		if err != nil || created {
			t.Fatalf("second CreateRefund() = created %t, error %v; want not created", created, err)
		}
		if diff := cmp.Diff(again, want); diff != "" {
			t.Errorf("second CreateRefund() mismatch (-got +want):\n%s", diff)
		}
		read, err := repo.Refund(ctx, order)
		if err != nil {
			t.Fatalf("Refund(): %v", err)
		}
		if diff := cmp.Diff(read, want); diff != "" {
			t.Errorf("Refund() mismatch (-got +want):\n%s", diff)
		}
		if c, err := repo.Charge(ctx, order); err != nil || c.ChargeID != "ch_1" {
			t.Errorf("Charge() = %+v, %v; want the untouched ch_1", c, err)
		}
	})

	t.Run("concurrent charge creates store one record", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		results := race(func(i int) (any, bool, error) {
			return repo.CreateCharge(ctx, charge(order, fmt.Sprintf("ch_%d", i)))
		})
		stored, err := repo.Charge(ctx, order)
		if err != nil {
			t.Fatalf("Charge(): %v", err)
		}
		checkRace(t, results, stored)
	})

	t.Run("concurrent refund creates store one record", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		results := race(func(i int) (any, bool, error) {
			return repo.CreateRefund(ctx, refund(order, fmt.Sprintf("re_%d", i)))
		})
		stored, err := repo.Refund(ctx, order)
		if err != nil {
			t.Fatalf("Refund(): %v", err)
		}
		checkRace(t, results, stored)
	})
}

type raceResult struct {
	rec     any
	created bool
	err     error
}

// race runs fn from Concurrency goroutines released together.
func race[T any](fn func(i int) (T, bool, error)) []raceResult {
	results := make([]raceResult, Concurrency)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range Concurrency {
		wg.Go(func() {
			<-start
			rec, created, err := fn(i)
			results[i] = raceResult{rec: rec, created: created, err: err}
		})
	}
	close(start)
	wg.Wait()
	return results
}

func checkRace(t *testing.T, results []raceResult, stored any) {
	t.Helper()
	created := 0
	for i, r := range results {
		if r.err != nil {
			t.Errorf("call %d: %v", i, r.err)
			continue
		}
		if r.created {
			created++
		}
		if diff := cmp.Diff(r.rec, stored); diff != "" {
			t.Errorf("call %d answered another record than the stored one (-got +want):\n%s", i, diff)
		}
	}
	if created != 1 {
		t.Errorf("%d calls created a record, want exactly 1", created)
	}
}

func orderID() string { return "contract-" + rand.Text() }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
