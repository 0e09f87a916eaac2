package order

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Config tunes the service.
type Config struct {
	PayWindow time.Duration // how long a pending order holds stock
	// IdemLease bounds how long a request owns its Idempotency-Key before a retry may take over.
	IdemLease time.Duration
	// IdemWait bounds how long a retry waits for the answer of the request holding its key
	// before it is refused with idempotency-key-in-use.
	IdemWait time.Duration
	// PaymentGrace is how long expiry leaves an order with a charge in flight alone before
	// asking the payment app what happened.
	PaymentGrace time.Duration
	MaxQuantity  int
	// SweepParallelism is how many orders the expiry passes of a replica work on at once;
	// SweepBudget bounds how long a pass keeps claiming windows (0: no bound).
	SweepParallelism int
	SweepBudget      time.Duration
	// ListLimit caps GET /me/orders (the newest orders; 0: 100).
	ListLimit int
	// SoldOutTTL is how long inventory's sold-out answer for a deal refuses purchases of it
	// from memory (see soldOutMarks); 0 turns the marker off.
	SoldOutTTL time.Duration
}

// Service implements the order use cases.
type Service struct {
	cfg      Config
	store    Store
	users    UserIndex
	pending  Pending
	groups   GroupIndex
	idem     Idempotency
	keys     *idempotency.Runner[IdemRecord, *IdemRecord]
	soldOut  *soldOutMarks
	gate     Admission
	deals    Deals
	stock    Stock
	payments Payments
	outbox   Outbox
	ids      IDs
	log      *slog.Logger
	now      func() time.Time
	// sweepSlots bounds the orders the expiry passes of this replica work on at once.
	sweepSlots chan struct{}
}

// Deps are the service's collaborators.
type Deps struct {
	Store   Store
	Users   UserIndex
	Pending Pending
	Groups  GroupIndex
	Idem    Idempotency
	Gate    Admission // admits placements; nil admits every one
	Deals   Deals
	Stock   Stock
	// Levels renews a lapsed sold-out mark with a read; nil lets the next purchase of the
	// deal find out from a reservation.
	Levels   StockLevels
	Payments Payments
	Outbox   Outbox
	IDs      IDs
	Log      *slog.Logger
	Now      func() time.Time
}

// NewService wires the service.
func NewService(cfg Config, d Deps) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Gate == nil {
		d.Gate = admitAll{}
	}
	if cfg.ListLimit <= 0 {
		cfg.ListLimit = 100
	}
	if cfg.PaymentGrace <= 0 {
		cfg.PaymentGrace = 30 * time.Second // also the bound of a payment that outlives its caller
	}
	keys := idempotency.NewRunner[IdemRecord](d.Idem, idempotency.Config{Lease: cfg.IdemLease, Wait: cfg.IdemWait}, d.Now, d.Log)
	return &Service{cfg: cfg, store: d.Store, users: d.Users, pending: d.Pending, groups: d.Groups, idem: d.Idem, keys: keys,
		soldOut: newSoldOutMarks(cfg.SoldOutTTL, d.Now, d.Levels), gate: d.Gate, deals: d.Deals, stock: d.Stock, payments: d.Payments, outbox: d.Outbox, ids: d.IDs, log: d.Log, now: d.Now,
		sweepSlots: make(chan struct{}, max(cfg.SweepParallelism, 1))}
}

// PlaceRequest is a flash order request.
type PlaceRequest struct {
	DealID         string
	Quantity       int
	IdempotencyKey string
}

// Reply is a finished response, as stored for idempotent replays.
type Reply = idempotency.Reply

// admitAll is the Admission of a service without a limit.
type admitAll struct{}

func (admitAll) Admit(context.Context) (func(), error) { return func() {}, nil }

// RenderFunc turns an outcome into the response that is stored and replayed.
type RenderFunc func(o Order, err error) Reply

// RequestHash fingerprints a request so a key reused with another body is detected.
func RequestHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Place creates a flash order exactly once per (user, Idempotency-Key). Business outcomes
// (created, sold out, limit, inactive deal) are stored with the key and replayed; transient
// failures end the key's lease so a retry resumes with the same order id, whose every step
// is idempotent. A retry while the first attempt is still working gets that attempt's answer
// (pkg/idempotency). A placement the app cannot take on now is refused before anything is
// written: 503 unavailable with a Retry-After.
//
// A purchase of a deal inventory answered sold out within SoldOutTTL is refused from memory
// (soldOutMarks) when its key has no record: one state read, nothing written, no admission
// slot taken. Such a refusal is not stored, so a retry with the same key is evaluated again
// and buys if stock came back; a key with a record (a placement that succeeded, is running,
// or was refused by inventory itself) goes the normal way and gets its stored answer.
func (s *Service) Place(ctx context.Context, u Caller, req PlaceRequest, render RenderFunc) (Reply, error) {
	if err := idempotency.CheckKey(req.IdempotencyKey); err != nil {
		return Reply{}, err
	}
	if req.Quantity < 1 || req.Quantity > s.cfg.MaxQuantity {
		return Reply{}, problem.Invalid(problem.FieldError{Field: "quantity", Reason: fmt.Sprintf("must be between 1 and %d", s.cfg.MaxQuantity)})
	}
	if s.soldOut.refuses(ctx, req.DealID, req.Quantity) {
		// The marker must not shadow a stored answer: the retry of an order that succeeded
		// before the deal sold out gets that order back.
		_, found, err := s.idem.Get(ctx, u.ID, req.IdempotencyKey)
		if err != nil {
			return Reply{}, err
		}
		if !found {
			return render(Order{}, ErrSoldOut), nil
		}
	}
	release, err := s.gate.Admit(ctx)
	if err != nil {
		return Reply{}, err
	}
	defer release()
	key := idempotency.Request{UserID: u.ID, Key: req.IdempotencyKey, Hash: RequestHash("place", req.DealID, fmt.Sprint(req.Quantity))}
	// The ids this request allocated: a claim that stored one of them made the key, so no
	// earlier attempt can have written that order.
	var allocated []string
	return s.keys.Run(ctx, key, func(r *IdemRecord) { r.OrderID = s.ids.NextString(); allocated = append(allocated, r.OrderID) },
		func(ctx context.Context, a *idempotency.Attempt[IdemRecord]) (Reply, error) {
			fresh := slices.Contains(allocated, a.Record.OrderID)
			o, err := s.place(ctx, u, req, a.Record.OrderID, fresh, a.Confirm)
			if err != nil && isTransient(err) {
				return Reply{}, err // not stored: a retry resumes (ErrNotOwner: it replays)
			}
			return render(o, err), nil
		})
}

// isTransient reports whether err may go away on retry (infrastructure), as opposed to a
// business outcome that must be replayed as is.
func isTransient(err error) bool {
	var pe *problem.Error
	if !errors.As(err, &pe) {
		return true
	}
	return pe.Code.Status() >= 500
}

// place makes the order of one attempt; fresh says the attempt made its key (the order id is
// new), owns confirms that the attempt still holds its key (see admit).
func (s *Service) place(ctx context.Context, u Caller, req PlaceRequest, orderID string, fresh bool, owns func(context.Context) error) (Order, error) {
	// A retry after a crash may find the order already made. The attempt that made it may
	// have died before its event was relayed: hand it over again (the event id is per order
	// and topic, so consumers drop a repeat).
	if !fresh {
		if o, _, err := s.store.Get(ctx, orderID); err == nil {
			s.relay(o)
			return o, nil
		} else if !errors.Is(err, ErrNotFound) {
			return Order{}, err
		}
	}
	deal, err := s.deals.Deal(ctx, req.DealID)
	if err != nil {
		return Order{}, err
	}
	if deal.Kind != "flash" {
		return Order{}, invalidState("group deals are bought by opening or joining a group")
	}
	now := s.now().UTC()
	if now.Before(deal.StartsAt) || !now.Before(deal.EndsAt) {
		return Order{}, ErrDealNotActive
	}
	o := Order{
		ID:             orderID,
		UserID:         u.ID,
		DealID:         deal.ID,
		Kind:           deal.Kind,
		Quantity:       req.Quantity,
		UnitPriceCents: deal.PriceCents,
		TotalCents:     deal.PriceCents * int64(req.Quantity),
		Status:         StatusPending,
		PayBy:          now.Add(s.cfg.PayWindow).Truncate(time.Millisecond),
		CreatedAt:      now.Truncate(time.Millisecond),
	}
	o.UpdatedAt = o.CreatedAt
	return s.admit(ctx, o, deal, owns)
}

// admit makes a new pending order: counts it against the user's limit, registers it for the
// expiry sweep, holds its stock, and stores it with its order.created event in its outbox
// (registered in the outbox index first). Every step is idempotent per order id, so a retry
// with the same id resumes where an attempt died.
//
// Several attempts may run with one order id: a request that stalled past its key's lease and
// the retry that took the key over. The steps up to the hold are harmless to repeat; undoing
// them and creating the order document are not (the stale attempt may be told "sold out" by
// inventory's cache after the retry reserved, or create the order after the retry was told
// "sold out" and undid). So both run only after owns confirms the attempt still holds its key;
// one that lost it returns idempotency.ErrNotOwner and leaves everything to the holder. A
// stale attempt's own re-added index and pending entries stay only where the holder undid
// the placement: the sweep then finds the id without an order and cleans it. owns is nil
// for group orders, which the group app's key protects.
func (s *Service) admit(ctx context.Context, o Order, deal Deal, owns func(context.Context) error) (Order, error) {
	if owns == nil {
		owns = func(context.Context) error { return nil }
	}
	// The purchase limit is checked and the quantity counted in one CAS of the user's index;
	// the counter lives until the deal ends.
	e := IndexEntry{OrderID: o.ID, DealID: o.DealID, Quantity: o.Quantity, Status: StatusPending, Until: deal.EndsAt}
	if err := s.users.Add(ctx, o.UserID, e, deal.PerUserLimit); err != nil {
		return Order{}, err
	}
	// Registered before the hold is taken: if we crash after reserving, the sweep finds the
	// id, sees no order document, and releases the hold.
	if err := s.pending.Add(ctx, pendingOf(o)); err != nil {
		return Order{}, err
	}
	state, soldOut, err := s.stock.Reserve(ctx, o.DealID, o.ID, o.Quantity, o.PayBy)
	if err != nil {
		return Order{}, err
	}
	if soldOut {
		if o.Kind == "flash" {
			s.soldOut.set(o.DealID, o.Quantity)
		}
		if err := owns(ctx); err != nil {
			return Order{}, err
		}
		s.undoPlacement(ctx, o)
		return Order{}, ErrSoldOut
	}
	if state != "reserved" {
		// A retry resumed too late: the sweep already gave this placement's hold back, and
		// the index entry and pending id re-added above must not outlive the answer.
		if err := owns(ctx); err != nil {
			return Order{}, err
		}
		s.undoPlacement(ctx, o)
		return Order{}, invalidState("this placement expired before it completed; retry with a new Idempotency-Key")
	}
	if err := owns(ctx); err != nil {
		return Order{}, err
	}
	return s.create(ctx, o)
}

// create stores a new order with its order.created event in its outbox and hands it to the
// relay. The order is registered in the outbox index before the document exists, so a crash
// between the write and the publish still gets the event out (the relay's recovery).
func (s *Service) create(ctx context.Context, o Order) (Order, error) {
	slot, err := s.outbox.Register(ctx, o.ID, events.TopicOrderCreated)
	if err != nil {
		return Order{}, err
	}
	o.record(events.TopicOrderCreated, slot)
	if err := s.store.Create(ctx, o); err != nil {
		return Order{}, err
	}
	s.outbox.Relay(o)
	return o, nil
}

// pendingOf is o's entry in the pending set, as admit registers it.
func pendingOf(o Order) PendingEntry {
	return PendingEntry{OrderID: o.ID, UserID: o.UserID, DealID: o.DealID, Due: o.PayBy}
}

// relay hands an order with events still waiting to the relay.
func (s *Service) relay(o Order) {
	if len(o.Outbox) > 0 {
		s.outbox.Relay(o)
	}
}

// undoPlacement forgets an order that never came to be (no stock). Inventory may answer
// "sold out" from its cache without looking for the order's hold, so an earlier attempt of
// this placement (a lost answer, retried by the sidecar or by the client) may still hold
// stock: the hold is released before the pending id goes. Failures are left to the expiry
// sweep, which handles ids without an order document.
func (s *Service) undoPlacement(ctx context.Context, o Order) {
	ctx = context.WithoutCancel(ctx)
	if err := s.users.Remove(ctx, o.UserID, o.ID); err != nil {
		s.log.WarnContext(ctx, "undo_placement_failed", slog.String("order_id", o.ID), slog.String("error", err.Error()))
		return
	}
	if err := s.stock.Release(ctx, o.DealID, o.ID); err != nil {
		s.log.WarnContext(ctx, "undo_placement_failed", slog.String("order_id", o.ID), slog.String("error", err.Error()))
		return
	}
	if err := s.pending.Remove(ctx, pendingOf(o)); err != nil {
		s.log.WarnContext(ctx, "undo_placement_failed", slog.String("order_id", o.ID), slog.String("error", err.Error()))
	}
}

// Get returns an order of the caller; another user's order does not exist for them.
func (s *Service) Get(ctx context.Context, u Caller, id string) (Order, error) {
	o, _, err := s.store.Get(ctx, id)
	if err != nil {
		return Order{}, err
	}
	if o.UserID != u.ID {
		return Order{}, fmt.Errorf("order %s of another user: %w", id, ErrNotFound)
	}
	return o, nil
}

// List returns the caller's newest orders older than the order before (a page's cursor: the
// last id of the page before it; "" for the first page), newest first, at most limit (0 or
// more than ListLimit: ListLimit).
func (s *Service) List(ctx context.Context, u Caller, before string, limit int) ([]Order, error) {
	if limit <= 0 || limit > s.cfg.ListLimit {
		limit = s.cfg.ListLimit
	}
	entries, err := s.users.List(ctx, u.ID, before, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Order, 0, len(entries))
	for _, e := range entries {
		o, _, err := s.store.Get(ctx, e.OrderID)
		if errors.Is(err, ErrNotFound) {
			continue // a placement in flight or undone
		}
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// update applies fn to the order under ETag CAS, retrying on conflict. A write that changes
// the status records the new status's event in the same write (registered in the outbox
// index first, once per call) and hands the order to the relay after it.
func (s *Service) update(ctx context.Context, id string, fn func(o *Order) error) (Order, error) {
	var slot, slotTopic string
	for attempt := 0; attempt < 20; attempt++ {
		o, etag, err := s.store.Get(ctx, id)
		if err != nil {
			return Order{}, err
		}
		from := o.Status
		if err := fn(&o); err != nil {
			return o, err
		}
		o.UpdatedAt = s.now().UTC().Truncate(time.Millisecond)
		moved := o.Status != from
		topic := statusTopics[o.Status]
		if moved {
			if slot == "" || slotTopic != topic {
				if slot, err = s.outbox.Register(ctx, id, topic); err != nil {
					return Order{}, err
				}
				slotTopic = topic
			}
			o.record(topic, slot)
		}
		err = s.store.Update(ctx, o, etag)
		if err == nil {
			if moved {
				// The relay gets the event this write recorded; earlier ones have their own
				// index entries (published, or left for recovery).
				h := o
				h.Outbox = slices.DeleteFunc(slices.Clone(o.Outbox), func(e OutboxEvent) bool { return e.Topic != topic })
				s.outbox.Relay(h)
			}
			return o, nil
		}
		if !errors.Is(err, ErrConflict) {
			return Order{}, err
		}
		if err := daprstate.Backoff(ctx, attempt); err != nil {
			return Order{}, err
		}
	}
	return Order{}, fmt.Errorf("order %s: %w", id, ErrConflict)
}

var errUnchanged = errors.New("order: unchanged")

// Pay charges the order and, for a flash order, confirms it.
func (s *Service) Pay(ctx context.Context, u Caller, id, token string) (Order, error) {
	if token == "" {
		return Order{}, problem.Invalid(problem.FieldError{Field: "payment_token", Reason: "is required"})
	}
	started := s.now().UTC()
	o, err := s.update(ctx, id, func(o *Order) error {
		if o.UserID != u.ID {
			return ErrNotFound
		}
		switch {
		case o.Status != StatusPending:
			return invalidState(fmt.Sprintf("an order in status %s cannot be paid", o.Status))
		case !started.Before(o.PayBy):
			return invalidState("the payment window has closed")
		}
		// A marker left by an attempt whose outcome is unknown (payment unreachable) does not
		// block a retry: charges are idempotent per order id, so concurrent or repeated
		// attempts all get the one charge, and only one of them moves the order to paid.
		o.PaymentStartedAt = &started
		return nil
	})
	if err != nil {
		return Order{}, err
	}
	// From here on money may move: the charge and what follows it (paid, stock committed,
	// confirmed) finish even when the caller gives up (an invocation timeout, a closed
	// connection), so a payer who left does not leave a charged order waiting for pay_by.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.PaymentGrace)
	defer cancel()
	res, err := s.payments.Charge(ctx, o.ID, o.TotalCents, token)
	if err != nil || res.Status != "succeeded" {
		// Nothing was charged (declined), or we cannot know (unavailable): the charge is
		// idempotent per order, so clearing the marker lets the owner retry and lets expiry
		// look the charge up later if it did go through.
		if _, cerr := s.update(context.WithoutCancel(ctx), id, func(o *Order) error {
			if o.Status != StatusPending || o.PaymentStartedAt == nil || !o.PaymentStartedAt.Equal(started) {
				return errUnchanged
			}
			if err == nil { // declined: the record says so for good
				o.PaymentStartedAt = nil
			}
			return nil
		}); cerr != nil && !errors.Is(cerr, errUnchanged) {
			s.log.WarnContext(ctx, "payment_marker_clear_failed", slog.String("order_id", id), slog.String("error", cerr.Error()))
		}
		if err != nil {
			return Order{}, fmt.Errorf("charge order %s: %w (%v)", id, ErrPaymentDown, err)
		}
		return Order{}, ErrPaymentDeclined
	}
	return s.completePayment(ctx, id)
}

// completePayment moves a charged order to paid and, for flash orders, commits its stock
// and confirms it. Every step is idempotent; the sweep calls it again after a crash.
func (s *Service) completePayment(ctx context.Context, id string) (Order, error) {
	o, err := s.update(ctx, id, func(o *Order) error {
		if o.Status != StatusPending {
			return errUnchanged
		}
		o.Status = StatusPaid
		o.PaymentStartedAt = nil
		o.Settled = false
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return Order{}, err
	}
	if o.Status == StatusCancelled {
		// The order was cancelled while the charge was in flight (its group was decided, or
		// the charge outlived the payment grace and expiry looked too early): the stock is
		// gone, so the money goes back.
		if _, err := s.refundLateCharge(ctx, o); err != nil {
			return Order{}, err
		}
		return Order{}, errChargeRefunded
	}
	if o.Status == StatusPaid {
		if err := s.users.SetStatus(ctx, o.UserID, o.ID, StatusPaid); err != nil {
			return Order{}, err
		}
		if o.Kind != "flash" {
			// Group orders stay paid until their group succeeds or fails.
			return s.awaitGroup(ctx, o)
		}
		if err := s.stock.Commit(ctx, o.DealID, o.ID); err != nil {
			return Order{}, err
		}
		o, err = s.update(ctx, id, func(o *Order) error {
			if o.Status != StatusPaid {
				return errUnchanged
			}
			o.Status = StatusConfirmed
			return nil
		})
		if err != nil && !errors.Is(err, errUnchanged) {
			return Order{}, err
		}
	}
	if o.Status == StatusConfirmed && !o.Settled {
		if err := s.settle(ctx, o); err != nil {
			return Order{}, err
		}
		o.Settled = true
	}
	return o, nil
}

// errChargeRefunded answers a payment whose charge landed after the order was cancelled.
var errChargeRefunded = invalidState("the order was cancelled while the payment was processed; the charge was refunded")

// refundLateCharge gives back a charge that landed after its order was cancelled and moves the
// order to refunded, so every succeeded charge ends on a confirmed or refunded order (DESIGN.md
// invariant 3). The money goes first; the payment app refunds an order at most once, so the
// live Pay request and the sweep may both get here.
func (s *Service) refundLateCharge(ctx context.Context, o Order) (Order, error) {
	if !o.Settled {
		// The cancellation's own effects come first: its stock back, and its event (the
		// group frees the seat on order.cancelled).
		if err := s.finishCancel(ctx, o); err != nil {
			return Order{}, err
		}
	}
	if err := s.payments.Refund(ctx, o.ID); err != nil {
		return Order{}, fmt.Errorf("refund charge of cancelled order %s: %w", o.ID, err)
	}
	o, err := s.update(ctx, o.ID, func(cur *Order) error {
		if cur.Status != StatusCancelled {
			return errUnchanged
		}
		cur.Status = StatusRefunded
		cur.PaymentStartedAt = nil
		cur.Settled = false
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return Order{}, err
	}
	if o.Status == StatusRefunded && !o.Settled {
		if err := s.settle(ctx, o); err != nil {
			return Order{}, err
		}
		o.Settled = true
	}
	return o, nil
}

// settle applies the side effects of a final status once the document says it: update the
// user's index, drop the order from the pending set, and mark it settled. The status's event
// is already in the order's outbox (written with the transition). A cancelled order whose
// charge may still land stays in the pending set: the sweep watches it (watchCharge).
func (s *Service) settle(ctx context.Context, o Order) error {
	if err := s.users.SetStatus(ctx, o.UserID, o.ID, o.Status); err != nil {
		return err
	}
	if o.PaymentStartedAt == nil {
		if err := s.pending.Remove(ctx, pendingOf(o)); err != nil {
			return err
		}
	}
	_, err := s.update(ctx, o.ID, func(cur *Order) error {
		if cur.Status != o.Status || cur.Settled {
			return errUnchanged
		}
		cur.Settled = true
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// Cancel cancels a pending order of the caller and releases its stock.
func (s *Service) Cancel(ctx context.Context, u Caller, id string) (Order, error) {
	now := s.now().UTC()
	// A charge started more than PaymentGrace ago whose answer was lost may have gone
	// through: ask the payment app, as the sweep does, rather than cancel a paid order.
	var looked *time.Time // the marker whose charge the payment app says did not succeed
	if cur, _, err := s.store.Get(ctx, id); err == nil && cur.UserID == u.ID && cur.Status == StatusPending &&
		cur.PaymentStartedAt != nil && now.Sub(*cur.PaymentStartedAt) >= s.cfg.PaymentGrace {
		res, found, err := s.payments.Lookup(ctx, id)
		if err != nil {
			return Order{}, err
		}
		if found && res.Status == "succeeded" {
			if _, err := s.completePayment(ctx, id); err != nil {
				return Order{}, err
			}
			return Order{}, invalidState("the order was paid")
		}
		looked = cur.PaymentStartedAt
	}
	o, err := s.update(ctx, id, func(o *Order) error {
		if o.UserID != u.ID {
			return ErrNotFound
		}
		if o.Status != StatusPending {
			return invalidState(fmt.Sprintf("an order in status %s cannot be cancelled", o.Status))
		}
		if o.PaymentStartedAt != nil && (looked == nil || !o.PaymentStartedAt.Equal(*looked)) {
			return invalidState("a payment for this order is in progress")
		}
		o.PaymentStartedAt = nil // answered for by the lookup after the grace
		o.Status = StatusCancelled
		o.Settled = false
		return nil
	})
	if err != nil {
		return Order{}, err
	}
	if err := s.finishCancel(ctx, o); err != nil {
		return Order{}, err
	}
	o.Settled = true
	return o, nil
}

// finishCancel releases a cancelled order's stock and settles it.
func (s *Service) finishCancel(ctx context.Context, o Order) error {
	if err := s.stock.Release(ctx, o.DealID, o.ID); err != nil {
		return err
	}
	return s.settle(ctx, o)
}

// ReplyFor is the standard rendering of outcomes: 201 with the order, or the problem.
func ReplyFor(view func(Order) ([]byte, error)) RenderFunc {
	return func(o Order, err error) Reply {
		if err != nil {
			doc := problem.Doc(err, "")
			body, _ := json.Marshal(doc)
			return Reply{Status: doc.Status, Body: body}
		}
		body, merr := view(o)
		if merr != nil {
			return Reply{Status: http.StatusInternalServerError}
		}
		return Reply{Status: http.StatusCreated, Body: body}
	}
}
