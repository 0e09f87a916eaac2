// Package paymenttest holds test helpers for the payment domain: an in-memory Repository with
// the concurrency semantics of the Dapr state store (a charge changes only over the version it
// was read at, a refund is a first-write create), a barrier that forces concurrent callers
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

// ErrConflict ends an UpdateCharge that lost its write maxAttempts times in a row.
var ErrConflict = errors.New("paymenttest: charge update kept conflicting")

// maxAttempts bounds the re-runs of one UpdateCharge, as the Dapr adapter's does.
const maxAttempts = 10

// Memory is an in-memory payment.Repository. Like an ETag write in the Dapr store, a charge
// update stores its result only if the charge is still at the version it read, and re-reads
// and re-runs the update otherwise; like a first-write create, a refund for an order that
// already has one keeps the stored refund and reports it.
type Memory struct {
	// AfterRead, when set, runs after every Charge and Refund read (UpdateCharge's reads
	// included), before it returns (set it before use). Holding readers there at a Barrier
	// makes them all see the same state.
	AfterRead func(ctx context.Context)

	mu      sync.Mutex
	charges map[string]versioned
	refunds map[string]payment.Refund
	writes  int // writes that stored a record
	calls   int // write attempts, stored or lost to a concurrent writer
	err     error
}

type versioned struct {
	charge  payment.Charge
	version int
}

var _ payment.Repository = (*Memory)(nil)

// NewMemory returns an empty repository.
func NewMemory() *Memory {
	return &Memory{charges: map[string]versioned{}, refunds: map[string]payment.Refund{}}
}

// Fail makes every later call fail with err (nil heals the store).
func (m *Memory) Fail(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = err
}

// PutCharge stores c as if an earlier call had written it.
func (m *Memory) PutCharge(c payment.Charge) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.charges[c.OrderID] = versioned{charge: c, version: m.charges[c.OrderID].version + 1}
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

// Writes returns the number of charge and refund writes that stored a record.
func (m *Memory) Writes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writes
}

// WriteCalls returns the number of charge and refund write attempts, stored or not.
func (m *Memory) WriteCalls() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.calls
}

// Charge implements payment.Repository.
func (m *Memory) Charge(ctx context.Context, orderID string) (payment.Charge, error) {
	v, found, err := m.readCharge(ctx, orderID)
	switch {
	case err != nil:
		return payment.Charge{}, err
	case !found:
		return payment.Charge{}, payment.ErrChargeNotFound
	}
	return v.charge, nil
}

func (m *Memory) readCharge(ctx context.Context, orderID string) (versioned, bool, error) {
	m.mu.Lock()
	v, ok := m.charges[orderID]
	err := m.err
	m.mu.Unlock()
	if m.AfterRead != nil {
		m.AfterRead(ctx)
	}
	if err != nil {
		return versioned{}, false, err
	}
	return v, ok, nil
}

// UpdateCharge implements payment.Repository.
func (m *Memory) UpdateCharge(ctx context.Context, orderID string, fn func(c *payment.Charge, found bool) error) (payment.Charge, error) {
	for range maxAttempts {
		read, found, err := m.readCharge(ctx, orderID)
		if err != nil {
			return payment.Charge{}, err
		}
		c := read.charge
		if err := fn(&c, found); err != nil {
			if errors.Is(err, payment.ErrNoChange) {
				return read.charge, nil
			}
			return payment.Charge{}, err
		}
		m.mu.Lock()
		m.calls++
		if m.err != nil {
			err := m.err
			m.mu.Unlock()
			return payment.Charge{}, err
		}
		if cur, ok := m.charges[orderID]; ok != found || cur.version != read.version {
			m.mu.Unlock() // another writer came first: decide again against its record
			if err := ctx.Err(); err != nil {
				return payment.Charge{}, err
			}
			continue
		}
		m.charges[orderID] = versioned{charge: c, version: read.version + 1}
		m.writes++
		m.mu.Unlock()
		return c, nil
	}
	return payment.Charge{}, fmt.Errorf("charge of order %s: %w", orderID, ErrConflict)
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
	m.writes++
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
	charge := func(orderID, id, status string) payment.Charge {
		return payment.Charge{ChargeID: id, OrderID: orderID, Status: status, AmountCents: 1999, CreatedAt: at}
	}
	refund := func(orderID, id string) payment.Refund {
		return payment.Refund{RefundID: id, OrderID: orderID, Status: payment.StatusRefunded, AmountCents: 1999, CreatedAt: at}
	}
	// put is an update that stores c whatever it finds.
	put := func(ctx context.Context, t *testing.T, repo payment.Repository, c payment.Charge) {
		t.Helper()
		if _, err := repo.UpdateCharge(ctx, c.OrderID, func(cur *payment.Charge, _ bool) error { *cur = c; return nil }); err != nil {
			t.Fatalf("UpdateCharge(%s): %v", c.ChargeID, err)
		}
	}
	readCharge := func(ctx context.Context, t *testing.T, repo payment.Repository, order string) payment.Charge {
		t.Helper()
		c, err := repo.Charge(ctx, order)
		if err != nil {
			t.Fatalf("Charge(): %v", err)
		}
		return c
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

	t.Run("update of a missing charge stores it", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		want := charge(order, "ch_1", payment.StatusDeclined)
		var sawFound []bool
		got, err := repo.UpdateCharge(ctx, order, func(c *payment.Charge, found bool) error {
			sawFound = append(sawFound, found)
			if diff := cmp.Diff(*c, payment.Charge{}); diff != "" {
				t.Errorf("fn got a non-zero charge for a missing record (-got +want):\n%s", diff)
			}
			*c = want
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateCharge(): %v", err)
		}
		if diff := cmp.Diff(sawFound, []bool{false}); diff != "" {
			t.Errorf("fn calls (found) mismatch (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("UpdateCharge() mismatch (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(readCharge(ctx, t, repo, order), want); diff != "" {
			t.Errorf("Charge() mismatch (-got +want):\n%s", diff)
		}
	})

	t.Run("update sees the stored charge and replaces it", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		first := charge(order, "ch_first", payment.StatusDeclined)
		put(ctx, t, repo, first)
		want := charge(order, "ch_second", payment.StatusSucceeded)
		got, err := repo.UpdateCharge(ctx, order, func(c *payment.Charge, found bool) error {
			if !found {
				t.Errorf("fn got found=false for a stored charge")
			}
			if diff := cmp.Diff(*c, first); diff != "" {
				t.Errorf("fn got another charge than the stored one (-got +want):\n%s", diff)
			}
			*c = want
			return nil
		})
		if err != nil {
			t.Fatalf("UpdateCharge(): %v", err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("UpdateCharge() mismatch (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(readCharge(ctx, t, repo, order), want); diff != "" {
			t.Errorf("Charge() mismatch (-got +want):\n%s", diff)
		}
	})

	t.Run("no change keeps the stored charge and answers it", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		stored := charge(order, "ch_1", payment.StatusSucceeded)
		put(ctx, t, repo, stored)
		got, err := repo.UpdateCharge(ctx, order, func(c *payment.Charge, _ bool) error {
			c.Status = payment.StatusDeclined // changed, then thought better of
			return payment.ErrNoChange
		})
		if err != nil {
			t.Fatalf("UpdateCharge(): %v", err)
		}
		if diff := cmp.Diff(got, stored); diff != "" {
			t.Errorf("UpdateCharge() mismatch (-got +want):\n%s", diff)
		}
		if diff := cmp.Diff(readCharge(ctx, t, repo, order), stored); diff != "" {
			t.Errorf("Charge() mismatch (-got +want):\n%s", diff)
		}
	})

	t.Run("no change on a missing charge stores nothing", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		got, err := repo.UpdateCharge(ctx, order, func(*payment.Charge, bool) error { return payment.ErrNoChange })
		if err != nil || got != (payment.Charge{}) {
			t.Fatalf("UpdateCharge() = %+v, %v; want the zero charge", got, err)
		}
		if _, err := repo.Charge(ctx, order); !errors.Is(err, payment.ErrChargeNotFound) {
			t.Errorf("Charge() error = %v, want %v", err, payment.ErrChargeNotFound)
		}
	})

	t.Run("an error of fn is returned and stores nothing", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		stored := charge(order, "ch_1", payment.StatusDeclined)
		put(ctx, t, repo, stored)
		errRefused := errors.New("refused")
		_, err := repo.UpdateCharge(ctx, order, func(c *payment.Charge, _ bool) error {
			c.Status = payment.StatusSucceeded
			return errRefused
		})
		if !errors.Is(err, errRefused) {
			t.Errorf("UpdateCharge() error = %v, want %v", err, errRefused)
		}
		if diff := cmp.Diff(readCharge(ctx, t, repo, order), stored); diff != "" {
			t.Errorf("Charge() mismatch (-got +want):\n%s", diff)
		}
	})

	t.Run("create refund then read it, apart from the charge", func(t *testing.T) {
		t.Parallel()
		ctx := testContext(t)
		repo, order := newRepo(t), orderID()
		put(ctx, t, repo, charge(order, "ch_1", payment.StatusSucceeded))
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
		if c := readCharge(ctx, t, repo, order); c.ChargeID != "ch_1" {
			t.Errorf("Charge() = %+v; want the untouched ch_1", c)
		}
	})

	// The two races the payment service runs: first attempts over no record, and attempts
	// over a decline. Each caller stores its own charge unless it finds a succeeded one, so
	// every update loses at most once and exactly one caller's charge must end up stored.
	for _, seed := range []string{"", payment.StatusDeclined} {
		name := "concurrent updates of a missing charge store one"
		if seed != "" {
			name = "concurrent updates of a declined charge store one"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := testContext(t)
			repo, order := newRepo(t), orderID()
			if seed != "" {
				put(ctx, t, repo, charge(order, "ch_seed", seed))
			}
			results := race(func(i int) (any, bool, error) {
				own := charge(order, fmt.Sprintf("ch_%d", i), payment.StatusSucceeded)
				c, err := repo.UpdateCharge(ctx, order, func(c *payment.Charge, found bool) error {
					if found && c.Status == payment.StatusSucceeded {
						return payment.ErrNoChange
					}
					*c = own
					return nil
				})
				return c, c == own, err
			})
			checkRace(t, results, readCharge(ctx, t, repo, order))
		})
	}

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
		t.Errorf("%d calls stored their record, want exactly 1", created)
	}
}

func orderID() string { return "contract-" + rand.Text() }

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}
