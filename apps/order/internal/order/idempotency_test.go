package order_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// placeResult is what one Place call returned.
type placeResult struct {
	reply order.Reply
	err   error
}

// blockFirstReserve makes the first Reserve wait until release is closed; entered is closed
// when it starts waiting. Later Reserves go through.
func blockFirstReserve(e *env) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	e.Stock.Set(func(s *ordertest.Stock) {
		s.OnReserve = func() {
			first := false
			once.Do(func() { first = true })
			if first {
				close(entered)
				<-release
			}
		}
	})
	return entered, release
}

// Loss window 2 (issue 8), "idempotency lease without an owner": a request that stalls past
// IDEMPOTENCY_LEASE is taken over by a retry that creates the order and answers 201. When the
// stale request resumes, whatever inventory tells it, it must neither undo the taken-over
// placement (user index, hold, pending entry) nor replace the stored 201; it answers the 201.
func TestPlaceStaleOwnerAfterLeaseTakeover(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		resume func(s *ordertest.Stock) // what inventory answers the stale request
	}{
		{name: "inventory answers sold out from its cache", resume: func(s *ordertest.Stock) { s.SoldOut = true }},
		{name: "inventory reports the retry's hold", resume: func(*ordertest.Stock) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			e := newEnv()
			entered, release := blockFirstReserve(e)
			req := order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k1"}
			stale := make(chan placeResult, 1)
			go func() {
				r, err := e.Svc.Place(ctx, alice, req, render)
				stale <- placeResult{r, err}
			}()
			select {
			case <-entered:
			case <-ctx.Done():
				t.Fatal("the first request never reached inventory")
			}

			e.Clock.Advance(ordertest.TestConfig.IdemLease + time.Second)
			retry, err := e.Svc.Place(ctx, alice, req, render)
			if err != nil || retry.Status != 201 {
				t.Fatalf("retry after the lease = %d %s, %v; want 201", retry.Status, retry.Body, err)
			}
			e.Stock.Set(tt.resume)
			close(release)
			var got placeResult
			select {
			case got = <-stale:
			case <-ctx.Done():
				t.Fatal("the stale request did not finish")
			}

			if got.err != nil || got.reply.Status != retry.Status || string(got.reply.Body) != string(retry.Body) {
				t.Errorf("stale request = %d %s, %v; want the retry's answer %d %s", got.reply.Status, got.reply.Body, got.err, retry.Status, retry.Body)
			}
			rec, _ := e.Idem.Record("u1", "k1")
			if !rec.Done || rec.Status != 201 || string(rec.Body) != string(retry.Body) {
				t.Errorf("stored reply = done %t %d %s, want the retry's 201 %s", rec.Done, rec.Status, rec.Body, retry.Body)
			}
			var o order.Order
			if err := json.Unmarshal(retry.Body, &o); err != nil {
				t.Fatal(err)
			}
			if stored, ok := e.Store.Order(o.ID); !ok || stored.Status != order.StatusPending {
				t.Errorf("order %s stored %t status %q, want it pending", o.ID, ok, stored.Status)
			}
			if got, want := e.Stock.Hold(o.ID), "reserved"; got != want {
				t.Errorf("hold of %s = %q, want %q", o.ID, got, want)
			}
			if got, want := e.Stock.CallsOf(o.ID), []string{"reserve", "reserve"}; !cmp.Equal(got, want) {
				t.Errorf("inventory calls = %v, want %v (nothing undone)", got, want)
			}
			if got := e.Users.Of("u1"); len(got) != 1 || got[0].OrderID != o.ID {
				t.Errorf("user index = %+v, want the order %s", got, o.ID)
			}
			if got := e.Pending.All(); len(got) != 1 || got[0].OrderID != o.ID {
				t.Errorf("pending = %+v, want the order %s", got, o.ID)
			}
		})
	}
}

// Loss window 8 (issue 8), "overload turns retries into refusals": a retry of a key whose
// first attempt is still working gets that attempt's answer, not 409 idempotency-key-in-use.
func TestPlaceRetryGetsTheFirstAttemptsAnswer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e := newEnv()
	entered, release := blockFirstReserve(e)
	req := order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k1"}
	first := make(chan placeResult, 1)
	go func() {
		r, err := e.Svc.Place(ctx, alice, req, render)
		first <- placeResult{r, err}
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the first request never reached inventory")
	}

	retried := make(chan placeResult, 1)
	go func() {
		r, err := e.Svc.Place(ctx, alice, req, render)
		retried <- placeResult{r, err}
	}()
	// The retry has read the key while the first attempt holds it.
	select {
	case <-e.Idem.Reads("u1", "k1", 2):
	case <-ctx.Done():
		t.Fatal("the retry never read the key")
	}
	close(release)
	var a, b placeResult
	for _, ch := range []chan placeResult{first, retried} {
		select {
		case r := <-ch:
			if ch == first {
				a = r
			} else {
				b = r
			}
		case <-ctx.Done():
			t.Fatal("a request did not finish")
		}
	}

	if a.err != nil || a.reply.Status != 201 {
		t.Fatalf("first request = %d %s, %v; want 201", a.reply.Status, a.reply.Body, a.err)
	}
	if b.err != nil || b.reply.Status != 201 || string(b.reply.Body) != string(a.reply.Body) {
		t.Errorf("retry = %d %s, %v; want the first request's 201 %s", b.reply.Status, b.reply.Body, b.err, a.reply.Body)
	}
	if got, want := e.Stock.CallsOf("o1"), []string{"reserve"}; !cmp.Equal(got, want) {
		t.Errorf("inventory calls = %v, want %v (the retry did no work)", got, want)
	}
}

// A retry waits for the request holding its key at most IdemWait: then it is refused with
// idempotency-key-in-use and a Retry-After, and nothing of its own is written.
func TestPlaceRetryRefusedAfterWaiting(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := ordertest.TestConfig
	cfg.IdemWait = 50 * time.Millisecond
	e := &env{ordertest.NewEnvWith(ordertest.Options{Config: cfg})}
	claimKey(t, e, alice, "k1", "flash", 2)

	_, err := e.Svc.Place(ctx, alice, order.PlaceRequest{DealID: "flash", Quantity: 2, IdempotencyKey: "k1"}, render)

	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Code != problem.CodeIdempotencyInUse || pe.RetryAfter <= 0 {
		t.Fatalf("error = %#v, want idempotency-key-in-use with a Retry-After", err)
	}
	if got := e.Stock.CallsOf("o1"); len(got) != 0 {
		t.Errorf("inventory calls = %v, want none", got)
	}
	if got := e.Users.Of("u1"); len(got) != 0 {
		t.Errorf("user index = %+v, want empty", got)
	}
}

// The idempotency record's writes land but their answers are lost (the sidecar's deadline
// passed while Redis applied them): the placement still completes, and the key is not locked
// for a lease.
func TestPlaceIdempotencyRepliesLost(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e := newEnv()
	req := order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k1"}
	e.Idem.State.SetLostReply(daprstatetest.ErrReplyLost)

	first, err := e.Svc.Place(ctx, alice, req, render)
	e.Idem.State.SetLostReply(nil)
	replay, rerr := e.Svc.Place(ctx, alice, req, render)

	if err != nil || first.Status != 201 {
		t.Fatalf("Place = %d %s, %v; want 201", first.Status, first.Body, err)
	}
	if rerr != nil || replay.Status != 201 || string(replay.Body) != string(first.Body) {
		t.Errorf("replay = %d %s, %v; want the first 201", replay.Status, replay.Body, rerr)
	}
	if got, want := e.Stock.CallsOf("o1"), []string{"reserve"}; !cmp.Equal(got, want) {
		t.Errorf("inventory calls = %v, want %v", got, want)
	}
}

// refuseAll is an Admission at capacity.
type refuseAll struct{}

func (refuseAll) Admit(context.Context) (func(), error) {
	return nil, &problem.Error{Code: problem.CodeUnavailable, Detail: "at capacity", RetryAfter: 2 * time.Second}
}

// Loss window 8: work the app cannot take on is refused before anything is written, with
// unavailable and a Retry-After.
func TestPlaceRefusedBeforeAnyWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := ordertest.NewEnvWith(ordertest.Options{Config: ordertest.TestConfig, Gate: refuseAll{}})

	_, err := e.Svc.Place(ctx, alice, order.PlaceRequest{DealID: "flash", Quantity: 1, IdempotencyKey: "k1"}, render)

	var pe *problem.Error
	if !errors.As(err, &pe) || pe.Code != problem.CodeUnavailable || pe.RetryAfter != 2*time.Second {
		t.Fatalf("error = %#v, want unavailable with Retry-After 2s", err)
	}
	if got := e.Idem.State.SaveCalls(); got != 0 {
		t.Errorf("idempotency writes = %d, want none", got)
	}
	if got := e.Users.Of("u1"); len(got) != 0 {
		t.Errorf("user index = %+v, want empty", got)
	}
	if got := e.Pending.All(); len(got) != 0 {
		t.Errorf("pending = %+v, want empty", got)
	}
	if got := e.Stock.CallsOf("o1"); len(got) != 0 {
		t.Errorf("inventory calls = %v, want none", got)
	}
}
