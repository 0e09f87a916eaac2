// Package soldout answers purchases of a sold-out deal at the edge: a refusal costs the JWT
// check, the rate limits and one Redis read, and invokes no app and writes nothing.
//
// The gateway learns that a deal is sold out from the order app's own answers passing through
// it (409 sold-out) and keeps the answer per deal for a short TTL (Marks): stock can come back
// (an unpaid order expires, a cancel), and sales resume at most TTL (plus one forwarded
// purchase) after the order app stops answering sold out. The refusal is the order app's problem (code and detail), which the
// gateway renders as it renders every relayed problem.
//
// The mark must never shadow a stored answer: the retry of an order that succeeded before the
// deal sold out must return that order. The gateway cannot see the order app's idempotency
// records, so it keeps its own fact, shared by every replica: "this (user, Idempotency-Key)
// was forwarded to the order app" (Placed), written before every forwarded purchase. Only a
// key never forwarded is refused at the edge; such a key has no record, so the order app
// would have refused it without storing anything either, and a retry is evaluated again.
package soldout

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Placed remembers which (user, Idempotency-Key) pairs were forwarded to the order app.
type Placed interface {
	// Mark records the pair; it must be durable before the purchase is forwarded.
	Mark(ctx context.Context, userID, key string) error
	// Seen tells whether the pair was marked.
	Seen(ctx context.Context, userID, key string) (bool, error)
}

// Edge decides, per purchase, between a refusal from memory and forwarding.
type Edge struct {
	marks  *Marks
	placed Placed
}

// NewEdge returns the edge over marks and placed.
func NewEdge(marks *Marks, placed Placed) *Edge { return &Edge{marks: marks, placed: placed} }

// Purchase is one purchase as the gateway sees it.
type Purchase struct {
	UserID, Key, DealID string
	Body                []byte // the request body, as forwarded
}

// Decide returns the refusal to answer p with (the order app's sold-out problem), or settle:
// p is to be forwarded, and settle must be called with the order app's answer (nil for a
// success, the relayed problem or the transport error otherwise), so the marks learn from it.
// An error means p can be neither refused nor safely forwarded (its key could not be marked).
func (e *Edge) Decide(ctx context.Context, p Purchase) (refusal error, settle func(answer error), err error) {
	settle = func(error) {}
	if idempotency.CheckKey(p.Key) != nil {
		// The order app refuses it before anything is stored: nothing to mark or learn.
		return nil, settle, nil
	}
	if qty, ok := quantity(p.Body); ok {
		var marked *problem.Error
		if marked, settle = e.marks.check(ctx, p.DealID, qty); marked != nil {
			seen, err := e.placed.Seen(ctx, p.UserID, p.Key)
			if err == nil && !seen {
				return marked, nil, nil
			}
			// A key forwarded before has its answer at the order app (marked already); one
			// we cannot look up is forwarded too, once marked.
			settle = e.marks.observer(p.DealID, qty, nil)
			if err == nil {
				return nil, settle, nil
			}
		}
	}
	if err := e.placed.Mark(ctx, p.UserID, p.Key); err != nil {
		settle(nil)
		return nil, nil, errors.Join(&problem.Error{Code: problem.CodeUnavailable,
			Detail: "the gateway cannot record the purchase", RetryAfter: time.Second}, err)
	}
	return nil, settle, nil
}

// quantity reads the purchase body the way the order app decodes it (one JSON object, no
// unknown fields, empty means {}); ok is false for anything the order app would refuse.
func quantity(body []byte) (int, bool) {
	var in struct {
		Quantity int `json:"quantity"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return 0, false
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return 0, false
	}
	return in.Quantity, in.Quantity >= 1
}

// Marks keeps, per deal, the order app's latest sold-out answer for ttl. A mark refuses the
// quantities between the smallest and the largest it was answered for: the order app refuses
// a quantity no bucket can hold, so more units are refused too, but only quantities it has
// refused are known to pass its validation. When a mark lapses, one purchase of the deal is
// forwarded and the others wait for its answer: sold out again renews the mark, anything else
// forgets it.
type Marks struct {
	ttl time.Duration
	now func() time.Time

	mu    sync.Mutex
	deals map[string]*mark
}

type mark struct {
	minQty, maxQty int
	until          time.Time
	refusal        *problem.Error
	probing        chan struct{} // closed when the forwarded purchase of a lapsed mark answers
}

// NewMarks returns marks that live ttl.
func NewMarks(ttl time.Duration, now func() time.Time) *Marks {
	return &Marks{ttl: ttl, now: now, deals: map[string]*mark{}}
}

// check returns the refusal when the deal's mark refuses qty; otherwise settle, to call with
// the answer of the forwarded purchase.
func (m *Marks) check(ctx context.Context, dealID string, qty int) (refusal *problem.Error, settle func(answer error)) {
	m.mu.Lock()
	for {
		mk := m.deals[dealID]
		switch {
		case mk == nil:
			m.mu.Unlock()
			return nil, m.observer(dealID, qty, nil)
		case m.now().Before(mk.until):
			m.mu.Unlock()
			if qty >= mk.minQty && qty <= mk.maxQty {
				return mk.refusal, nil
			}
			return nil, m.observer(dealID, qty, nil)
		case mk.probing != nil:
			wait := mk.probing
			m.mu.Unlock()
			select {
			case <-wait:
			case <-ctx.Done():
				return nil, m.observer(dealID, qty, nil)
			}
			m.mu.Lock()
		default:
			mk.probing = make(chan struct{})
			m.mu.Unlock()
			return nil, m.observer(dealID, qty, mk)
		}
	}
}

// observer learns from one forwarded purchase's answer; probe is the lapsed mark it answers
// for, if any: it is renewed by a sold-out answer and forgotten otherwise.
func (m *Marks) observer(dealID string, qty int, probe *mark) func(answer error) {
	var once sync.Once
	return func(answer error) {
		once.Do(func() {
			var pe *problem.Error
			soldOut := errors.As(answer, &pe) && pe.Code == problem.CodeSoldOut
			m.mu.Lock()
			defer m.mu.Unlock()
			if probe != nil {
				close(probe.probing)
				probe.probing = nil
				if !soldOut && m.deals[dealID] == probe {
					delete(m.deals, dealID)
				}
			}
			if soldOut {
				m.setLocked(dealID, qty, &problem.Error{Code: pe.Code, Detail: pe.Detail})
			}
		})
	}
}

func (m *Marks) setLocked(dealID string, qty int, refusal *problem.Error) {
	now := m.now()
	mk := m.deals[dealID]
	if mk == nil {
		mk = &mark{}
		m.deals[dealID] = mk
	}
	if !now.Before(mk.until) {
		mk.minQty, mk.maxQty = qty, qty
	}
	mk.minQty, mk.maxQty = min(mk.minQty, qty), max(mk.maxQty, qty)
	mk.until, mk.refusal = now.Add(m.ttl), refusal
}
