// Package actorhost hosts GroupActor over the Dapr actor HTTP protocol on the app's router,
// instead of the go-sdk actor server (which wants a mux of its own):
//
//	GET    /dapr/config                                  the actor types this app hosts
//	PUT    /actors/GroupActor/{id}/method/{method}       a method call (one turn)
//	PUT    /actors/GroupActor/{id}/method/remind/{name}  a reminder firing (one turn)
//	PUT    /actors/GroupActor/{id}/method/timer/{name}   a timer firing (none are used)
//	DELETE /actors/GroupActor/{id}                       deactivation
//
// Every call comes from the sidecar, which makes calls to one actor id turn-based. A turn loads
// the group's state, applies one transition of package group, saves the state explicitly when
// it changed (this host keeps no state in memory between turns), publishes the outbox, and
// keeps the durable "deadline" reminder registered exactly while the group is undecided or its
// outbox unsent.
//
// Turn-based is not enough on its own: after a rebalance (a host died or was drained past
// its drain timeout, or a call timed out on the sidecar's side) the old host may still be
// running a turn while the new host runs the next one. So every save names the version of the
// state its turn read and fails with ErrStale when another turn saved since. Dapr's actor
// state API has no such check (its transactions take no ETag), so the state lives in the
// group app's own keys of the plain state API, written with the ETag the turn read
// (apps/group/internal/daprstore). A stale turn stops before it publishes anything and
// answers non-200, so the sidecar retries the call on the actor's current host.
//
// Wire contract of method calls: daprd 1.16 passes an actor's answer through only when it is
// a 200 (pkg/actors/targets/app: any other status becomes an opaque "error from actor
// service" 500, and the actor resiliency policy would retry it). So business outcomes (group
// full, closed, already a member) are 200 answers carrying a problem document in the body
// (Reply); a non-200 answer means the turn failed (state store or broker unreachable) and
// nothing of it was acknowledged, so retrying it is safe: every method is idempotent.
package actorhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// ActorType is the Dapr actor type of groups.
const ActorType = "GroupActor"

// ReminderDeadline is the name of a group's deadline reminder.
const ReminderDeadline = "deadline"

// Method names of GroupActor.
const (
	MethodOpenSeat   = "OpenSeat"
	MethodJoinSeat   = "JoinSeat"
	MethodMemberPaid = "MemberPaid"
	MethodMemberLeft = "MemberLeft"
	MethodGet        = "Get"
	// Methods of the previous version, which took a seat in three turns (reserve, then hold
	// or free after the order call): still served for its replicas during a rolling upgrade.
	MethodOpen          = "Open"
	MethodJoin          = "Join"
	MethodSeatConfirmed = "SeatConfirmed"
	MethodSeatFailed    = "SeatFailed"
)

// maxEarlyFiring bounds how early a deadline firing may come and still be handled at once.
const maxEarlyFiring = 2 * time.Second

// Reply is the body of every successful (200) method call: the group after the turn (and,
// for OpenSeat and JoinSeat, the member's order), or the business error the method answered
// with.
type Reply struct {
	Group   *group.Group      `json:"group,omitempty"`
	Order   json.RawMessage   `json:"order,omitempty"`
	Problem *problem.Document `json:"problem,omitempty"`
}

// ErrStale is a save over a version of the state that is no longer the stored one: another
// turn (on another host, after a rebalance) saved the group since this turn read it.
var ErrStale = errors.New("actor state: saved by another turn since it was read")

// State is the actor's state, saved with an optimistic concurrency check.
type State interface {
	// Get returns the group and the version it was read at; found=false (version "") when
	// the group has no state.
	Get(ctx context.Context, id string) (g group.Group, version string, found bool, err error)
	// Save stores g if the stored state is still at version ("" for a group with no state
	// yet) and returns the version of the state it stored; ErrStale otherwise.
	Save(ctx context.Context, id string, g group.Group, version string) (string, error)
	// Put is Save for a turn that saves once: it does not learn the new version, which
	// costs the store a round trip.
	Put(ctx context.Context, id string, g group.Group, version string) error
}

// Reminders registers and deletes the actor's durable reminders (held by the scheduler).
type Reminders interface {
	Register(ctx context.Context, id, name string, due time.Time, period time.Duration) error
	Delete(ctx context.Context, id, name string) error
}

// Publisher publishes group events (a group's final turn, which waits for them).
type Publisher interface {
	PublishGroup(ctx context.Context, e events.GroupV1) error
}

// Relay publishes the events of other turns after the turn (apps/group/internal/relay).
type Relay interface {
	// Hand queues events for publishing, unless published or queued already; never blocks.
	Hand(ctx context.Context, evs []events.GroupV1)
	// Published reports whether the event is known published.
	Published(id string) bool
}

// Config tunes the host.
type Config struct {
	// ReserveTimeout frees a seat left "reserving" this long (its join flow died).
	ReserveTimeout time.Duration
	// ReminderPeriod repeats the deadline reminder after its due time until the group is
	// decided and announced, so a failed turn or publish is retried.
	ReminderPeriod time.Duration
	// OrderTimeout bounds the member's order call inside a seat's turn; it must stay below
	// the sidecar's timeout for actor calls (dapr/resiliency.yaml: 5s), so a turn answers
	// before the sidecar gives up on it.
	OrderTimeout time.Duration
	// IdleTimeout and DrainTimeout are reported to the sidecar in /dapr/config.
	IdleTimeout  time.Duration
	DrainTimeout time.Duration
}

// Host serves GroupActor.
type Host struct {
	cfg       Config
	state     State
	reminders Reminders
	pub       Publisher
	relay     Relay
	orders    group.Orders
	log       *slog.Logger
	now       func() time.Time

	mu    sync.Mutex
	locks map[string]*turnLock
}

type turnLock struct {
	mu   sync.Mutex
	refs int
}

// Deps are the host's collaborators.
type Deps struct {
	State     State
	Reminders Reminders
	Pub       Publisher
	Relay     Relay
	// Orders places members' orders inside the turns that take seats.
	Orders group.Orders
	Log    *slog.Logger
	Now    func() time.Time
}

// New returns the host.
func New(cfg Config, d Deps) *Host {
	if d.Now == nil {
		d.Now = time.Now
	}
	if cfg.OrderTimeout <= 0 {
		cfg.OrderTimeout = 4 * time.Second
	}
	return &Host{cfg: cfg, state: d.State, reminders: d.Reminders, pub: d.Pub, relay: d.Relay, orders: d.Orders, log: d.Log, now: d.Now, locks: map[string]*turnLock{}}
}

// Routes mounts the actor protocol on r.
func (h *Host) Routes(r chi.Router) {
	r.Get("/dapr/config", func(w http.ResponseWriter, _ *http.Request) {
		httpjson.Write(w, http.StatusOK, map[string]any{
			"entities":                []string{ActorType},
			"actorIdleTimeout":        h.cfg.IdleTimeout.String(),
			"drainOngoingCallTimeout": h.cfg.DrainTimeout.String(),
			"drainRebalancedActors":   true,
		})
	})
	base := "/actors/" + ActorType + "/{id}"
	r.Put(base+"/method/remind/{name}", h.remind)
	r.Put(base+"/method/timer/{name}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	r.Put(base+"/method/{method}", h.method)
	// No state lives in memory between turns, so deactivation has nothing to drop.
	r.Delete(base, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
}

// lock serializes turns of one actor inside this process too. The sidecar already does, but
// when a call times out on the sidecar's side it releases the actor while this process may
// still be running the call; a retry must not interleave with it.
func (h *Host) lock(id string) func() {
	h.mu.Lock()
	l := h.locks[id]
	if l == nil {
		l = &turnLock{}
		h.locks[id] = l
	}
	l.refs++
	h.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		h.mu.Lock()
		l.refs--
		if l.refs == 0 {
			delete(h.locks, id)
		}
		h.mu.Unlock()
	}
}

func (h *Host) method(w http.ResponseWriter, r *http.Request) {
	id, method := chi.URLParam(r, "id"), chi.URLParam(r, "method")
	var out Reply
	op, err := h.operation(method, r, &out)
	if err != nil {
		if problem.CodeOf(err) == problem.CodeNotFound {
			problem.Write(w, r, err) // daprd: "actor method not found", not retried
			return
		}
		httpjson.Write(w, http.StatusOK, Reply{Problem: ptr(problem.Doc(err, ""))})
		return
	}
	g, err := h.Turn(r.Context(), id, op)
	if err != nil && isInfra(err) {
		h.log.WarnContext(r.Context(), "actor_turn_failed", slog.String("group_id", id), slog.String("method", method), slog.String("error", err.Error()))
		problem.Write(w, r, err)
		return
	}
	out.Group = &g
	if err != nil {
		out = Reply{Problem: ptr(problem.Doc(err, ""))}
	}
	httpjson.Write(w, http.StatusOK, out)
}

// operation decodes a method call into the transition it runs; a seat's turn puts the
// member's order in out.
func (h *Host) operation(method string, r *http.Request, out *Reply) (Op, error) {
	decode := func(v any) error {
		if err := json.NewDecoder(io.LimitReader(r.Body, httpjson.MaxBody)).Decode(v); err != nil {
			return problem.Errorf(problem.CodeValidation, "%s: %v", method, err)
		}
		return nil
	}
	seat := func(reserve func(g *group.Group, now time.Time) error, a group.SeatArgs) Op {
		return func(g *group.Group, now time.Time) error {
			if err := reserve(g, now); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(r.Context(), h.cfg.OrderTimeout)
			defer cancel()
			o, err := group.PlaceSeat(ctx, h.orders, g, a, now, h.cfg.ReserveTimeout)
			out.Order = o.Raw
			return err
		}
	}
	switch method {
	case MethodOpenSeat:
		var a group.OpenArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return seat(func(g *group.Group, now time.Time) error { return group.Open(g, a, now) },
			group.SeatArgs{UserID: a.UserID, OrderID: a.OrderID}), nil
	case MethodJoinSeat:
		var a group.SeatArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return seat(func(g *group.Group, now time.Time) error { return g.Join(a, now, h.cfg.ReserveTimeout) }, a), nil
	case MethodOpen:
		var a group.OpenArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return func(g *group.Group, now time.Time) error { return group.Open(g, a, now) }, nil
	case MethodJoin:
		var a group.SeatArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return func(g *group.Group, now time.Time) error { return g.Join(a, now, h.cfg.ReserveTimeout) }, nil
	case MethodSeatConfirmed:
		var a group.SeatArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return func(g *group.Group, now time.Time) error { return g.ConfirmSeat(a, now, h.cfg.ReserveTimeout) }, nil
	case MethodSeatFailed:
		var a group.SeatArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return func(g *group.Group, now time.Time) error { g.FailSeat(a, now); return nil }, nil
	case MethodMemberPaid:
		var a group.PaidArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return func(g *group.Group, now time.Time) error { g.MemberPaid(a, now); return nil }, nil
	case MethodMemberLeft:
		var a group.LeftArgs
		if err := decode(&a); err != nil {
			return nil, err
		}
		return func(g *group.Group, _ time.Time) error { g.MemberLeft(a); return nil }, nil
	case MethodGet:
		return func(g *group.Group, now time.Time) error {
			if !g.Exists() {
				return group.ErrNotFound
			}
			g.Reap(now, h.cfg.ReserveTimeout)
			return nil
		}, nil
	default:
		return nil, problem.Errorf(problem.CodeNotFound, "GroupActor has no method %q", method)
	}
}

// remind handles a reminder firing. A non-200 answer makes the scheduler retry it.
func (h *Host) remind(w http.ResponseWriter, r *http.Request) {
	id, name := chi.URLParam(r, "id"), chi.URLParam(r, "name")
	if name != ReminderDeadline {
		h.log.WarnContext(r.Context(), "unknown_reminder_deleted", slog.String("group_id", id), slog.String("reminder", name))
		if err := h.reminders.Delete(r.Context(), id, name); err != nil {
			problem.Write(w, r, err)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	g, err := h.Turn(r.Context(), id, func(g *group.Group, now time.Time) error {
		// The scheduler's clock and ours may differ a little: a firing just before the
		// deadline waits for it (inside the turn, so nothing else happens meanwhile) rather
		// than coming back a whole reminder period late.
		if wait := g.ExpiresAt.Sub(now); g.Exists() && wait > 0 && wait <= maxEarlyFiring {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-r.Context().Done():
				return r.Context().Err()
			case <-t.C:
			}
			now = h.now().UTC().Truncate(time.Millisecond)
		}
		g.Deadline(now)
		return nil
	})
	if err != nil {
		h.log.WarnContext(r.Context(), "deadline_turn_failed", slog.String("group_id", id), slog.String("error", err.Error()))
		problem.Write(w, r, err)
		return
	}
	if !g.Exists() {
		// The reminder of a group whose state is gone: only reminders of groups are wanted.
		if err := h.reminders.Delete(r.Context(), id, name); err != nil {
			h.log.WarnContext(r.Context(), "stray_reminder_delete_failed", slog.String("group_id", id), slog.String("error", err.Error()))
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	if g.DeadlineFiredAt != nil {
		h.log.InfoContext(r.Context(), "group_deadline", slog.String("group_id", id), slog.String("status", string(g.Status)),
			slog.Duration("lateness", g.DeadlineFiredAt.Sub(g.ExpiresAt)))
	}
	w.WriteHeader(http.StatusOK)
}

// Op is one transition of a group, run inside a turn.
type Op func(g *group.Group, now time.Time) error

// Turn runs op on the group's state as one turn: load, apply, save if changed, and announce.
// op's business error is returned with the group; state saved before it stays saved (a Join
// that reaped stale seats and then found the group full still frees them).
//
// An open group's turn saves at most once: the deadline reminder is registered before the
// save (once anyone hears of the group, its deadline is durable), the events go to the relay
// after it, and the events the relay has published leave the outbox with the turn's save (or
// a later one). A group's final turn publishes its outbox itself and then drops the reminder,
// saving again for those: the order app settles the group's orders on that event, and the
// reminder stays until it is out.
func (h *Host) Turn(ctx context.Context, id string, op Op) (group.Group, error) {
	unlock := h.lock(id)
	defer unlock()
	g, version, found, err := h.state.Get(ctx, id)
	if err != nil {
		return group.Group{}, err
	}
	g.Outbox = slices.DeleteFunc(g.Outbox, func(e events.GroupV1) bool { return h.relay.Published(e.EventID) })
	if len(g.Outbox) == 0 {
		g.Outbox = nil
	}
	before := fingerprint(g, found)
	opErr := op(&g, h.now().UTC().Truncate(time.Millisecond))
	if opErr != nil && isInfra(opErr) {
		return group.Group{}, opErr
	}
	if !g.Exists() {
		if found {
			return group.Group{}, fmt.Errorf("group %s: a transition emptied the state", id)
		}
		return g, opErr // a call for a group that was never opened: nothing to keep
	}
	if g.Status == group.StatusOpen && !g.ReminderSet {
		if err := h.reminders.Register(ctx, g.ID, ReminderDeadline, g.ExpiresAt, h.cfg.ReminderPeriod); err != nil {
			return group.Group{}, fmt.Errorf("register deadline reminder of group %s: %w", g.ID, err)
		}
		g.ReminderSet = true
	}
	if fingerprint(g, true) != before {
		// A stale turn ends here, before anything of it is announced: its outcome was
		// decided on a state that no longer exists.
		if !g.Status.Final() {
			err = h.state.Put(ctx, id, g, version)
		} else {
			version, err = h.state.Save(ctx, id, g, version)
		}
		if err != nil {
			return group.Group{}, err
		}
	}
	if !g.Status.Final() {
		h.relay.Hand(ctx, g.Outbox)
		return g, opErr
	}
	if err := h.close(ctx, &g, version); err != nil {
		return group.Group{}, err
	}
	return g, opErr
}

// close announces a decided group's outcome (and whatever else its outbox holds) and drops
// its reminder once the outbox is empty, saving the state (over version, the one the turn
// saved or read) when either changes it. Events published before a save that turns out stale
// are not lost or doubled in effect: the turn that saved since read them in the outbox and
// publishes them again under the same event ids, which consumers deduplicate.
func (h *Host) close(ctx context.Context, g *group.Group, version string) error {
	before := fingerprint(*g, true)
	var errs []error
	sent := 0
	for _, e := range g.Outbox {
		if err := h.pub.PublishGroup(ctx, e); err != nil {
			errs = append(errs, fmt.Errorf("publish %s: %w", e.EventID, err))
			break
		}
		sent++
	}
	g.Outbox = g.Outbox[sent:]
	if len(g.Outbox) == 0 {
		g.Outbox = nil
	}
	if len(g.Outbox) == 0 && g.ReminderSet {
		if err := h.reminders.Delete(ctx, g.ID, ReminderDeadline); err != nil {
			// Harmless: the next firing finds the group decided and tries again.
			h.log.WarnContext(ctx, "deadline_reminder_delete_failed", slog.String("group_id", g.ID), slog.String("error", err.Error()))
		} else {
			g.ReminderSet = false
		}
	}
	if fingerprint(*g, true) != before {
		if err := h.state.Put(ctx, g.ID, *g, version); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func fingerprint(g group.Group, found bool) string {
	if !found {
		return ""
	}
	b, err := json.Marshal(g)
	if err != nil {
		return fmt.Sprintf("unencodable %p", &g)
	}
	return string(b)
}

// isInfra reports whether err is a failure of the turn itself, as opposed to a business answer.
func isInfra(err error) bool {
	var pe *problem.Error
	if !errors.As(err, &pe) {
		return true
	}
	return pe.Code.Status() >= 500
}

func ptr[T any](v T) *T { return &v }
