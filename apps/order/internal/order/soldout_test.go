package order_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

const soldOutTTL = time.Second

// levels is order.StockLevels: what it answers, how often it was asked, and an optional
// hook that runs (outside the lock) before it answers.
type levels struct {
	mu     sync.Mutex
	left   int
	err    error
	calls  int
	before func()
}

func (l *levels) Available(context.Context, string) (int, error) {
	l.mu.Lock()
	hook := l.before
	l.mu.Unlock()
	if hook != nil {
		hook()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	return l.left, l.err
}

func (l *levels) set(fn func(l *levels)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(l)
}

func (l *levels) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// soldOutEnv is an Env whose service keeps sold-out marks for soldOutTTL; lv, when not nil,
// renews lapsed marks. reserves counts inventory's Reserve calls.
type soldOutEnv struct {
	*env
	reserves atomic.Int64
}

func newSoldOutEnv(lv order.StockLevels) *soldOutEnv {
	e := &soldOutEnv{env: newEnv()}
	cfg := ordertest.TestConfig
	cfg.SoldOutTTL = soldOutTTL
	e.Svc = order.NewService(cfg, order.Deps{
		Store: e.Store, Users: e.Users, Pending: e.Pending, Groups: e.Groups, Idem: e.Idem, Deals: e.Deals,
		Stock: e.Stock, Levels: lv, Payments: e.Pay, Outbox: e.Outbox, IDs: &ordertest.IDs{},
		Log: slog.New(slog.DiscardHandler), Now: e.Clock.Now,
	})
	e.Stock.Set(func(s *ordertest.Stock) { s.OnReserve = func() { e.reserves.Add(1) } })
	return e
}

func (e *soldOutEnv) try(t *testing.T, u order.Caller, key, dealID string, qty int) order.Reply {
	t.Helper()
	reply, err := e.Svc.Place(context.Background(), u, order.PlaceRequest{DealID: dealID, Quantity: qty, IdempotencyKey: key}, render)
	if err != nil {
		t.Fatalf("place %s: %v", key, err)
	}
	return reply
}

// writes is what the service has written so far: idempotency records, index and pending
// entries, reservations asked for.
type writes struct {
	IdemSaves, Index, Pending int
	Reserves                  int64
}

func (e *soldOutEnv) writes(users ...order.Caller) writes {
	w := writes{IdemSaves: len(e.Idem.State.Writes("statestore", "idem:")), Pending: len(e.Pending.All()), Reserves: e.reserves.Load()}
	for _, u := range users {
		w.Index += len(e.Users.Of(u.ID))
	}
	return w
}

// soldOutOnce makes inventory refuse one purchase of the deal, which sets the mark, and
// returns that refusal.
func (e *soldOutEnv) soldOutOnce(t *testing.T, dealID string, qty int) order.Reply {
	t.Helper()
	e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = true })
	first := e.try(t, bob, "discover-"+dealID, dealID, qty)
	if got, want := replyCode(t, first), problem.CodeSoldOut; got != want {
		t.Fatalf("inventory's refusal = %s, want %s", got, want)
	}
	return first
}

func TestSoldOutMarkRefusesWithoutWrites(t *testing.T) {
	t.Parallel()
	e := newSoldOutEnv(nil)
	first := e.soldOutOnce(t, "flash", 1)
	before := e.writes(alice, bob)

	for _, key := range []string{"k1", "k2", "k3"} {
		got := e.try(t, alice, key, "flash", 1)
		if diff := cmp.Diff(first, got); diff != "" {
			t.Errorf("refusal of %s differs from inventory's (-want +got):\n%s", key, diff)
		}
		if _, found := e.Idem.Record(alice.ID, key); found {
			t.Errorf("key %s has a record after a refusal from the mark", key)
		}
	}
	if diff := cmp.Diff(before, e.writes(alice, bob)); diff != "" {
		t.Errorf("refusals from the mark wrote or reserved (-before +after):\n%s", diff)
	}
}

// The mark must not shadow a stored answer: the retry of an order that succeeded before the
// deal sold out returns that order, and the replay of inventory's own refusal is that refusal.
func TestSoldOutMarkKeepsReplays(t *testing.T) {
	t.Parallel()
	e := newSoldOutEnv(nil)
	ok := e.try(t, alice, "bought", "flash", 1)
	if ok.Status != 201 {
		t.Fatalf("purchase = %d %s, want 201", ok.Status, ok.Body)
	}
	refused := e.soldOutOnce(t, "flash", 1)
	before := e.writes(alice, bob)

	if diff := cmp.Diff(ok, e.try(t, alice, "bought", "flash", 1)); diff != "" {
		t.Errorf("replay of the purchase while sold out (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(refused, e.try(t, bob, "discover-flash", "flash", 1)); diff != "" {
		t.Errorf("replay of inventory's refusal (-want +got):\n%s", diff)
	}
	// Another body with a stored key is still "reused", not sold out.
	if got, want := replyCodeOrErr(t, e, alice, "bought", "flash", 2), problem.CodeIdempotencyReused; got != want {
		t.Errorf("stored key with another quantity = %s, want %s", got, want)
	}
	if diff := cmp.Diff(before, e.writes(alice, bob)); diff != "" {
		t.Errorf("replays wrote or reserved (-before +after):\n%s", diff)
	}
}

func replyCodeOrErr(t *testing.T, e *soldOutEnv, u order.Caller, key, dealID string, qty int) problem.Code {
	t.Helper()
	reply, err := e.Svc.Place(context.Background(), u, order.PlaceRequest{DealID: dealID, Quantity: qty, IdempotencyKey: key}, render)
	if err != nil {
		return problem.CodeOf(err)
	}
	return replyCode(t, reply)
}

func TestSoldOutMarkScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		markQty    int
		dealID     string
		qty        int
		wantMarked bool
	}{
		{name: "same deal, same quantity", markQty: 1, dealID: "flash", qty: 1, wantMarked: true},
		{name: "same deal, more units", markQty: 2, dealID: "flash", qty: 3, wantMarked: true},
		{name: "same deal, fewer units than refused", markQty: 2, dealID: "flash", qty: 1},
		{name: "another deal", markQty: 1, dealID: "limited", qty: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newSoldOutEnv(nil)
			e.soldOutOnce(t, "flash", tt.markQty)
			e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = false })
			reserves := e.reserves.Load()
			reply := e.try(t, alice, "k", tt.dealID, tt.qty)
			if got := e.reserves.Load() == reserves; got != tt.wantMarked {
				t.Errorf("refused without asking inventory = %t, want %t (reply %d %s)", got, tt.wantMarked, reply.Status, reply.Body)
			}
		})
	}
}

// Stock can come back (an unpaid order expires): the mark refuses for SoldOutTTL only.
func TestSoldOutMarkLapses(t *testing.T) {
	t.Parallel()
	e := newSoldOutEnv(nil)
	e.soldOutOnce(t, "flash", 1)
	e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = false })

	e.Clock.Advance(soldOutTTL - time.Millisecond)
	if got, want := replyCode(t, e.try(t, alice, "k1", "flash", 1)), problem.CodeSoldOut; got != want {
		t.Fatalf("within the TTL = %s, want %s", got, want)
	}
	e.Clock.Advance(time.Millisecond)
	// The refusal from the mark stored nothing: the same key buys now.
	if got := e.try(t, alice, "k1", "flash", 1); got.Status != 201 {
		t.Fatalf("same key after the TTL = %d %s, want 201", got.Status, got.Body)
	}
}

// A lapsed mark is renewed by a read of the deal's levels, one at a time: still empty
// refuses without writes, stock back sells.
func TestSoldOutMarkProbe(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		left       int
		err        error
		wantStatus int
	}{
		{name: "still empty: renewed", left: 0, wantStatus: 409},
		{name: "stock back: forgotten", left: 3, wantStatus: 201},
		{name: "levels unreadable: inventory decides", err: errors.New("inventory down"), wantStatus: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lv := &levels{left: tt.left, err: tt.err}
			e := newSoldOutEnv(lv)
			e.soldOutOnce(t, "flash", 1)
			e.Stock.Set(func(s *ordertest.Stock) { s.SoldOut = tt.wantStatus == 409 })
			e.Clock.Advance(soldOutTTL)
			before := e.writes(alice, bob)

			if got := e.try(t, alice, "k1", "flash", 1); got.Status != tt.wantStatus {
				t.Fatalf("after the TTL = %d %s, want %d", got.Status, got.Body, tt.wantStatus)
			}
			if got, want := lv.Calls(), 1; got != want {
				t.Errorf("levels read %d times, want %d", got, want)
			}
			if tt.wantStatus == 409 {
				if diff := cmp.Diff(before, e.writes(alice, bob)); diff != "" {
					t.Errorf("renewed mark wrote or reserved (-before +after):\n%s", diff)
				}
				// Renewed for another TTL: no second read.
				e.try(t, alice, "k2", "flash", 1)
				if got, want := lv.Calls(), 1; got != want {
					t.Errorf("levels read %d times after the renewal, want %d", got, want)
				}
			}
		})
	}
}

func TestSoldOutMarkProbeIsShared(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	lv := &levels{}
	lv.set(func(l *levels) {
		l.before = func() {
			once.Do(func() { close(entered) })
			<-release
		}
	})
	e := newSoldOutEnv(lv)
	e.soldOutOnce(t, "flash", 1)
	e.Clock.Advance(soldOutTTL)
	before := e.writes(alice, bob)

	const n = 8
	replies := make(chan order.Reply, n)
	for i := range n {
		go func() {
			r, err := e.Svc.Place(ctx, alice, order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: string(rune('a' + i))}, render)
			if err != nil {
				r = order.Reply{Status: problem.CodeOf(err).Status()}
			}
			replies <- r
		}()
	}
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("no purchase read the levels")
	}
	close(release)
	for range n {
		select {
		case r := <-replies:
			if r.Status != 409 {
				t.Errorf("purchase = %d %s, want 409", r.Status, r.Body)
			}
		case <-ctx.Done():
			t.Fatal("purchases did not finish")
		}
	}
	if got, want := lv.Calls(), 1; got != want {
		t.Errorf("levels read %d times by %d purchases, want %d", got, n, want)
	}
	if diff := cmp.Diff(before, e.writes(alice, bob)); diff != "" {
		t.Errorf("purchases wrote or reserved (-before +after):\n%s", diff)
	}
}
