package group

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
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Actors calls GroupActor methods through the sidecar; Dapr runs each call as one turn of
// the group's actor. Business outcomes come back as *problem.Error values of this package.
// OpenSeat and JoinSeat take a seat whole in one turn: reserve it, place the member's order
// through the order app, hold the seat or free it (PlaceSeat).
type Actors interface {
	OpenSeat(ctx context.Context, groupID string, a OpenArgs) (Seated, error)
	JoinSeat(ctx context.Context, groupID string, a SeatArgs) (Seated, error)
	MemberPaid(ctx context.Context, groupID string, a PaidArgs) (Group, error)
	MemberLeft(ctx context.Context, groupID string, a LeftArgs) (Group, error)
	Get(ctx context.Context, groupID string) (Group, error)
}

// States reads a group's saved state without a turn (listings).
type States interface {
	Load(ctx context.Context, groupID string) (g Group, found bool, err error)
}

// OrderRequest asks the order app for a member's order, idempotent by OrderID.
type OrderRequest struct {
	OrderID string    `json:"order_id"`
	UserID  string    `json:"user_id"`
	DealID  string    `json:"deal_id"`
	GroupID string    `json:"group_id"`
	PayBy   time.Time `json:"pay_by"`
}

// Order is the order app's answer: its public view, relayed as is, and the status.
type Order struct {
	ID     string
	Status string
	Raw    json.RawMessage
}

// Orders is the order app.
type Orders interface {
	PlaceGroupOrder(ctx context.Context, r OrderRequest) (Order, error)
}

// Seated is the answer of a seat taken: the group after the turn and the member's order (the
// order app's public view, relayed as is).
type Seated struct {
	Group Group
	Order json.RawMessage
}

// PlaceSeat runs inside the turn that reserved the member's seat in g (Open or Join): it
// places the member's order, idempotent by order id, and holds the seat, or frees it when the
// order app refuses (sold out, purchase limit, deal over). A transient failure is returned as
// is and the turn saves nothing: its retry, or the client's with the same Idempotency-Key,
// places the same order again. The seat and its order are thus decided in one turn: no other
// turn ever sees the seat "reserving", and a request that stalled past its key's lease cannot
// free a seat its retry got (their turns run one after the other).
func PlaceSeat(ctx context.Context, orders Orders, g *Group, a SeatArgs, now time.Time, reserveTimeout time.Duration) (Order, error) {
	o, err := orders.PlaceGroupOrder(ctx, OrderRequest{OrderID: a.OrderID, UserID: a.UserID, DealID: g.DealID, GroupID: g.ID, PayBy: g.ExpiresAt})
	if err == nil && o.Status != "pending_payment" && o.Status != "paid" && o.Status != "confirmed" {
		// A retry that resumed too late: the order expired meanwhile.
		err = problem.New(problem.CodeInvalidState, "this request expired before it completed; retry with a new Idempotency-Key")
	}
	if err != nil {
		if !isTransient(err) {
			g.FailSeat(a, now)
		}
		return Order{}, err
	}
	if err := g.ConfirmSeat(a, now, reserveTimeout); err != nil {
		return Order{}, err
	}
	return o, nil
}

// Deal is what the group app needs to know about a deal (from the catalog; immutable).
type Deal struct {
	ID              string    `json:"id"`
	Kind            string    `json:"kind"`
	StartsAt        time.Time `json:"starts_at"`
	EndsAt          time.Time `json:"ends_at"`
	GroupSize       int       `json:"group_size"`
	GroupTTLSeconds int       `json:"group_ttl_seconds"`
}

// Deals reads deals from the catalog.
type Deals interface {
	Deal(ctx context.Context, id string) (Deal, error)
}

// Idempotency stores one record per (user, Idempotency-Key), as the order app does
// (pkg/idempotency runs Open and Join over it).
type Idempotency = idempotency.Keys[IdemRecord]

// IdemRecord is a stored idempotency record. The ids are allocated when the key is first
// used, so a retry resumes the same group and order.
type IdemRecord struct {
	idempotency.Record
	GroupID string `json:"group_id"`
	OrderID string `json:"order_id"`
}

// Index lists the groups of each deal.
type Index interface {
	Add(ctx context.Context, dealID, groupID string, expiresAt time.Time) error
	List(ctx context.Context, dealID string) ([]IndexEntry, error)
	// Remove drops entries (groups long decided).
	Remove(ctx context.Context, dealID string, groupIDs []string) error
}

// IndexEntry is one group of a deal.
type IndexEntry struct {
	GroupID   string    `json:"group_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

// IDs issues group and order ids.
type IDs interface{ NextString() string }

// Caller is the authenticated user.
type Caller = identity.User

// Config tunes the service.
type Config struct {
	// IdemLease bounds how long a request owns its Idempotency-Key before a retry may take over.
	IdemLease time.Duration
	// IdemWait bounds how long a retry waits for the answer of the request holding its key
	// before it is refused with idempotency-key-in-use.
	IdemWait time.Duration
	// IndexRetention is how long a decided group stays in its deal's listing.
	IndexRetention time.Duration
}

// Service implements the group use cases of the public API and reacts to order events.
type Service struct {
	cfg    Config
	actors Actors
	states States
	deals  Deals
	keys   *idempotency.Runner[IdemRecord, *IdemRecord]
	index  Index
	ids    IDs
	log    *slog.Logger
	now    func() time.Time
}

// Deps are the service's collaborators.
type Deps struct {
	Actors Actors
	States States
	Deals  Deals
	Idem   Idempotency
	Index  Index
	IDs    IDs
	Log    *slog.Logger
	Now    func() time.Time
}

// NewService wires the service.
func NewService(cfg Config, d Deps) *Service {
	if d.Now == nil {
		d.Now = time.Now
	}
	keys := idempotency.NewRunner[IdemRecord](d.Idem, idempotency.Config{Lease: cfg.IdemLease, Wait: cfg.IdemWait}, d.Now, d.Log)
	return &Service{cfg: cfg, actors: d.Actors, states: d.States, deals: d.Deals,
		keys: keys, index: d.Index, ids: d.IDs, log: d.Log, now: d.Now}
}

// Reply is a finished response, as stored for idempotent replays.
type Reply = idempotency.Reply

// Created is the body of a successful open or join: 201 {group, order}.
type Created struct {
	Group View            `json:"group"`
	Order json.RawMessage `json:"order"`
}

// RequestHash fingerprints a request so a key reused with another request is detected.
func RequestHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Open opens a group on a group deal with the caller as leader, exactly once per (user,
// Idempotency-Key): 201 {group, order}. Outcomes are stored with the key and replayed;
// transient failures end the key's lease so a retry resumes with the same ids.
func (s *Service) Open(ctx context.Context, u Caller, dealID, key string) (Reply, error) {
	return s.idempotent(ctx, u, key, RequestHash("open", dealID),
		func(r *IdemRecord) { r.GroupID, r.OrderID = s.ids.NextString(), s.ids.NextString() },
		func(ctx context.Context, a *idempotency.Attempt[IdemRecord]) (Created, error) {
			return s.open(ctx, u, dealID, a)
		})
}

// Join takes a seat in a group for the caller, exactly once per (user, Idempotency-Key):
// 201 {group, order}.
func (s *Service) Join(ctx context.Context, u Caller, groupID, key string) (Reply, error) {
	return s.idempotent(ctx, u, key, RequestHash("join", groupID),
		func(r *IdemRecord) { r.GroupID, r.OrderID = groupID, s.ids.NextString() },
		func(ctx context.Context, a *idempotency.Attempt[IdemRecord]) (Created, error) {
			return s.join(ctx, u, groupID, a)
		})
}

// idempotent runs do once per (user, key) through pkg/idempotency: business outcomes are
// stored and replayed, transient failures are not (a retry resumes with the same ids).
func (s *Service) idempotent(ctx context.Context, u Caller, key, hash string, alloc func(*IdemRecord), do func(context.Context, *idempotency.Attempt[IdemRecord]) (Created, error)) (Reply, error) {
	if err := idempotency.CheckKey(key); err != nil {
		return Reply{}, err
	}
	return s.keys.Run(ctx, idempotency.Request{UserID: u.ID, Key: key, Hash: hash}, alloc,
		func(ctx context.Context, a *idempotency.Attempt[IdemRecord]) (Reply, error) {
			out, err := do(ctx, a)
			if err != nil && isTransient(err) {
				return Reply{}, err
			}
			return render(out, err), nil
		})
}

func render(c Created, err error) Reply {
	if err != nil {
		doc := problem.Doc(err, "")
		body, _ := json.Marshal(doc)
		return Reply{Status: doc.Status, Body: body}
	}
	body, merr := json.Marshal(c)
	if merr != nil {
		return Reply{Status: http.StatusInternalServerError}
	}
	return Reply{Status: http.StatusCreated, Body: body}
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

func (s *Service) open(ctx context.Context, u Caller, dealID string, a *idempotency.Attempt[IdemRecord]) (Created, error) {
	rec := a.Record
	deal, err := s.deals.Deal(ctx, dealID)
	if err != nil {
		return Created{}, err
	}
	if deal.Kind != "group" || deal.GroupSize < 1 || deal.GroupTTLSeconds < 1 {
		return Created{}, problem.New(problem.CodeInvalidState, "flash deals are bought with orders, not groups")
	}
	now := s.now().UTC()
	if now.Before(deal.StartsAt) || !now.Before(deal.EndsAt) {
		return Created{}, problem.New(problem.CodeDealNotActive, "the deal is not active")
	}
	// A group cannot outlive its deal: orders are not taken after the deal ends.
	expires := now.Add(time.Duration(deal.GroupTTLSeconds) * time.Second)
	if deal.EndsAt.Before(expires) {
		expires = deal.EndsAt
	}
	seated, err := s.actors.OpenSeat(ctx, rec.GroupID, OpenArgs{
		GroupID: rec.GroupID, DealID: deal.ID, GroupSize: deal.GroupSize,
		ExpiresAt: expires.Truncate(time.Millisecond), UserID: u.ID, OrderID: rec.OrderID,
	})
	if err != nil {
		return Created{}, err
	}
	g := seated.Group
	// Listed once public; a failure here is transient and the retry redoes every step.
	if err := s.index.Add(ctx, g.DealID, g.ID, g.ExpiresAt); err != nil {
		return Created{}, err
	}
	return Created{Group: ViewOf(g), Order: seated.Order}, nil
}

func (s *Service) join(ctx context.Context, u Caller, groupID string, a *idempotency.Attempt[IdemRecord]) (Created, error) {
	seated, err := s.actors.JoinSeat(ctx, groupID, SeatArgs{UserID: u.ID, OrderID: a.Record.OrderID})
	if err != nil {
		return Created{}, err
	}
	return Created{Group: ViewOf(seated.Group), Order: seated.Order}, nil
}

// Get returns a public group.
func (s *Service) Get(ctx context.Context, id string) (View, error) {
	// A group that was never saved is answered from the store: reading a made-up id must not
	// activate an actor (a flood of them would fill the placement tables and actor memory).
	if _, found, err := s.states.Load(ctx, id); err != nil {
		return View{}, err
	} else if !found {
		return View{}, ErrNotFound
	}
	g, err := s.actors.Get(ctx, id)
	if err != nil {
		return View{}, err
	}
	if !g.Visible() {
		return View{}, ErrNotFound
	}
	return ViewOf(g), nil
}

// List returns the public groups of a deal, soonest deadline first; status filters by status
// ("" for all). The deal's index names the groups; each one's status comes from its saved
// state, read without a turn.
func (s *Service) List(ctx context.Context, dealID string, status Status) ([]View, error) {
	switch status {
	case "", StatusOpen, StatusSucceeded, StatusFailed:
	default:
		return nil, problem.Invalid(problem.FieldError{Field: "status", Reason: `must be "open", "succeeded" or "failed"`})
	}
	entries, err := s.index.List(ctx, dealID)
	if err != nil {
		return nil, err
	}
	states := make([]Group, len(entries))
	found := make([]bool, len(entries))
	errs := make([]error, len(entries))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, e := range entries {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			states[i], found[i], errs[i] = s.states.Load(ctx, e.GroupID)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	items := []View{}
	var stale []string
	for i, g := range states {
		if !found[i] || !g.Visible() {
			continue
		}
		if g.ClosedAt != nil && now.Sub(*g.ClosedAt) > s.cfg.IndexRetention {
			stale = append(stale, g.ID)
			continue
		}
		if status == "" || g.Status == status {
			items = append(items, ViewOf(g))
		}
	}
	if len(stale) > 0 {
		if err := s.index.Remove(context.WithoutCancel(ctx), dealID, stale); err != nil {
			s.log.WarnContext(ctx, "group_index_prune_failed", slog.String("deal_id", dealID), slog.String("error", err.Error()))
		}
	}
	slices.SortFunc(items, func(a, b View) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	return items, nil
}

// OrderEvent applies an order event to the order's group: paid → MemberPaid, cancelled →
// MemberLeft. Both are idempotent, so redelivered events are harmless. Orders without a group
// (flash orders) and other topics are ignored.
func (s *Service) OrderEvent(ctx context.Context, e events.OrderV1) error {
	if e.GroupID == "" {
		return nil
	}
	var err error
	switch e.Type {
	case events.TopicOrderPaid:
		_, err = s.actors.MemberPaid(ctx, e.GroupID, PaidArgs{OrderID: e.OrderID, UserID: e.UserID, PaidAt: e.OccurredAt})
	case events.TopicOrderCancelled:
		_, err = s.actors.MemberLeft(ctx, e.GroupID, LeftArgs{OrderID: e.OrderID})
	default:
		return nil
	}
	if err != nil && !isTransient(err) {
		// The group does not exist (or refuses): nothing to apply, retrying cannot help.
		s.log.WarnContext(ctx, "order_event_ignored", slog.String("order_id", e.OrderID),
			slog.String("group_id", e.GroupID), slog.String("error", err.Error()))
		return nil
	}
	if err != nil {
		return fmt.Errorf("apply %s of order %s to group %s: %w", e.Type, e.OrderID, e.GroupID, err)
	}
	return nil
}
