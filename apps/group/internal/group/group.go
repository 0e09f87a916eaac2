// Package group owns group buying (DESIGN.md §3): a leader opens a group of group_size seats
// for a group deal, others join it, and the group succeeds when every seat is paid before its
// deadline, or fails when the deadline passes first.
//
// Group is the state of one GroupActor. The transitions below are pure functions of the state,
// the arguments and the time; the actor host (apps/group/internal/actorhost) runs each one in
// a Dapr actor turn, so no two transitions of a group ever interleave: that turn is what makes
// "never more than group_size seats" hold under any number of concurrent joins.
//
// A seat is taken in one turn (PlaceSeat): Join reserves it ("reserving"), the member's order
// is placed, and the same turn holds the seat (ConfirmSeat, "held") or frees it (FailSeat,
// the order app refused), so the turn saves only the outcome. "Reserving" seats are stored
// only by the previous version, which took a seat in three turns; a reservation whose join
// flow died there is freed after a timeout (Reap). An unpaid seat is freed when its order is
// cancelled or expires (MemberLeft); a paid seat stays.
//
// Events a transition causes go to the state's outbox, saved with the transition, and are
// published after the save: a final outcome is durable before anyone hears of it, and a save
// over a state another turn has changed since fails (actorhost.ErrStale), so a group can never
// announce both "succeeded" and "failed".
package group

import (
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Status of a group.
type Status string

// Statuses.
const (
	StatusOpen      Status = "open"
	StatusSucceeded Status = "succeeded"
	StatusFailed    Status = "failed"
)

// Final reports whether the group's outcome is decided.
func (s Status) Final() bool { return s == StatusSucceeded || s == StatusFailed }

// SeatState is the state of a seat.
type SeatState string

// Seat states.
const (
	SeatReserving SeatState = "reserving" // taken by Join; the member's order is being placed
	SeatHeld      SeatState = "held"      // the member's order exists
)

// Errors of the group domain (problem codes of DESIGN.md §4).
var (
	ErrNotFound      = problem.New(problem.CodeNotFound, "group not found")
	ErrFull          = problem.New(problem.CodeGroupFull, "the group is full")
	ErrClosed        = problem.New(problem.CodeGroupClosed, "the group is closed")
	ErrAlreadyMember = problem.New(problem.CodeAlreadyMember, "you are already a member of this group")
	ErrIDConflict    = problem.New(problem.CodeConflict, "the group id is taken by another group")
)

// Seat is one member's place in a group.
type Seat struct {
	UserID   string     `json:"user_id"`
	OrderID  string     `json:"order_id"`
	State    SeatState  `json:"state"`
	Paid     bool       `json:"paid"`
	PaidAt   *time.Time `json:"paid_at,omitempty"`
	JoinedAt time.Time  `json:"joined_at"`
}

// Group is the stored state of a GroupActor.
type Group struct {
	ID        string    `json:"id"`
	DealID    string    `json:"deal_id"`
	Status    Status    `json:"status"`
	GroupSize int       `json:"group_size"`
	ExpiresAt time.Time `json:"expires_at"`
	Seats     []Seat    `json:"seats"`
	LeaderID  string    `json:"leader_id"`
	// LeaderOrderID makes Open idempotent: a replay names the same leader and order.
	LeaderOrderID string `json:"leader_order_id"`
	// Opened: the leader's order exists and the group is public (group.opened announced).
	Opened    bool       `json:"opened"`
	CreatedAt time.Time  `json:"created_at"`
	ClosedAt  *time.Time `json:"closed_at,omitempty"`
	// DeadlineFiredAt is when the deadline reminder was first handled.
	DeadlineFiredAt *time.Time `json:"deadline_fired_at,omitempty"`
	// ReminderSet: the durable "deadline" reminder is registered. It stays until the group is
	// final and its outbox is empty, so a failed publish is retried on the next firing.
	ReminderSet bool `json:"reminder_set"`
	// Outbox holds events saved with the transition that caused them, not yet published.
	Outbox []events.GroupV1 `json:"outbox,omitempty"`
}

// Exists reports whether the state holds a group (a never-opened actor has zero state).
func (g *Group) Exists() bool { return g.ID != "" }

// Visible reports whether the group is public: opened, or decided after it was.
func (g *Group) Visible() bool { return g.Exists() && g.Opened }

// PaidCount is the number of paid seats.
func (g *Group) PaidCount() int {
	n := 0
	for _, s := range g.Seats {
		if s.Paid {
			n++
		}
	}
	return n
}

func (g *Group) seatOfUser(userID string) int {
	return slices.IndexFunc(g.Seats, func(s Seat) bool { return s.UserID == userID })
}

func (g *Group) seatOfOrder(orderID string) int {
	return slices.IndexFunc(g.Seats, func(s Seat) bool { return s.OrderID == orderID })
}

// joinable reports whether new seats may be taken at now.
func (g *Group) joinable(now time.Time) bool {
	return g.Status == StatusOpen && now.Before(g.ExpiresAt)
}

// OpenArgs opens a group with the leader's seat.
type OpenArgs struct {
	GroupID   string    `json:"group_id"`
	DealID    string    `json:"deal_id"`
	GroupSize int       `json:"group_size"`
	ExpiresAt time.Time `json:"expires_at"`
	UserID    string    `json:"user_id"`
	OrderID   string    `json:"order_id"`
}

// SeatArgs names a member and the order of their seat.
type SeatArgs struct {
	UserID  string `json:"user_id"`
	OrderID string `json:"order_id"`
}

// PaidArgs reports a member's order paid (from order.paid).
type PaidArgs struct {
	OrderID string    `json:"order_id"`
	UserID  string    `json:"user_id"`
	PaidAt  time.Time `json:"paid_at"`
}

// LeftArgs reports a member's order cancelled or expired (from order.cancelled).
type LeftArgs struct {
	OrderID string `json:"order_id"`
}

// Open creates the group with the leader's seat reserving. A replay (same leader and order)
// changes nothing, except that a leader seat freed meanwhile is taken again.
func Open(g *Group, a OpenArgs, now time.Time) error {
	if g.Exists() {
		if g.LeaderID != a.UserID || g.LeaderOrderID != a.OrderID {
			return ErrIDConflict
		}
		if g.seatOfOrder(a.OrderID) < 0 && g.Status == StatusOpen && !g.Opened {
			g.Seats = append(g.Seats, Seat{UserID: a.UserID, OrderID: a.OrderID, State: SeatReserving, JoinedAt: now})
		}
		return nil
	}
	if !now.Before(a.ExpiresAt) {
		return ErrClosed
	}
	*g = Group{
		ID:            a.GroupID,
		DealID:        a.DealID,
		Status:        StatusOpen,
		GroupSize:     a.GroupSize,
		ExpiresAt:     a.ExpiresAt.UTC(),
		Seats:         []Seat{{UserID: a.UserID, OrderID: a.OrderID, State: SeatReserving, JoinedAt: now}},
		LeaderID:      a.UserID,
		LeaderOrderID: a.OrderID,
		CreatedAt:     now,
	}
	return nil
}

// Join reserves a seat for the user's order. A replay (the user's seat with the same order)
// succeeds again and restarts the reservation's timeout: its join flow is alive.
func (g *Group) Join(a SeatArgs, now time.Time, reserveTimeout time.Duration) error {
	if !g.Visible() {
		return ErrNotFound
	}
	if i := g.seatOfUser(a.UserID); i >= 0 {
		if g.Seats[i].OrderID != a.OrderID {
			return ErrAlreadyMember
		}
		if g.Seats[i].State == SeatReserving {
			g.Seats[i].JoinedAt = now
		}
		return nil
	}
	if !g.joinable(now) {
		return ErrClosed
	}
	g.Reap(now, reserveTimeout)
	if len(g.Seats) >= g.GroupSize {
		return ErrFull
	}
	g.Seats = append(g.Seats, Seat{UserID: a.UserID, OrderID: a.OrderID, State: SeatReserving, JoinedAt: now})
	return nil
}

// ConfirmSeat holds the seat once the member's order exists and announces it (group.opened for
// the leader's seat, group.joined for the others). A seat freed meanwhile (the join outlived
// the reservation timeout) is taken again if the group still has room.
func (g *Group) ConfirmSeat(a SeatArgs, now time.Time, reserveTimeout time.Duration) error {
	if !g.Exists() {
		return ErrNotFound
	}
	i := g.seatOfOrder(a.OrderID)
	switch {
	case i >= 0 && g.Seats[i].State == SeatHeld:
		return nil // replay
	case i >= 0:
		if g.Status != StatusOpen {
			return ErrClosed
		}
		g.Seats[i].State = SeatHeld
	default:
		if !g.joinable(now) {
			return ErrClosed
		}
		if g.seatOfUser(a.UserID) >= 0 {
			return ErrAlreadyMember
		}
		g.Reap(now, reserveTimeout)
		if len(g.Seats) >= g.GroupSize {
			return ErrFull
		}
		g.Seats = append(g.Seats, Seat{UserID: a.UserID, OrderID: a.OrderID, State: SeatHeld, JoinedAt: now})
	}
	if !g.Opened {
		g.Opened = true
		g.emit(events.TopicGroupOpened, a.UserID, a.OrderID, now)
		return nil
	}
	g.emit(events.TopicGroupJoined, a.UserID, a.OrderID, now)
	return nil
}

// FailSeat frees the seat of an order that could not be placed (sold out, purchase limit). A
// group whose leader's order failed was never public: it ends at once, unannounced.
func (g *Group) FailSeat(a SeatArgs, now time.Time) {
	i := g.seatOfOrder(a.OrderID)
	if i < 0 || g.Seats[i].Paid || g.Seats[i].State == SeatHeld {
		return
	}
	g.Seats = slices.Delete(g.Seats, i, i+1)
	if !g.Opened && g.Status == StatusOpen {
		g.Status = StatusFailed
		g.ClosedAt = &now
	}
}

// MemberPaid marks the order's seat paid; when every seat is paid, each before the deadline,
// the group succeeds. A paid order whose seat was freed (a reservation that timed out) gets a
// seat back while the group has room; otherwise it is not a member, and the order app refunds
// it when the group ends (it finds every order of the group, members or not).
func (g *Group) MemberPaid(a PaidArgs, now time.Time) {
	if !g.Exists() {
		return
	}
	paidAt := a.PaidAt.UTC()
	i := g.seatOfOrder(a.OrderID)
	switch {
	case i >= 0:
		if g.Seats[i].Paid {
			return
		}
		g.Seats[i].Paid, g.Seats[i].PaidAt, g.Seats[i].State = true, &paidAt, SeatHeld
	case g.Status == StatusOpen && g.Opened && g.seatOfUser(a.UserID) < 0 && len(g.Seats) < g.GroupSize && !paidAt.After(g.ExpiresAt):
		g.Seats = append(g.Seats, Seat{UserID: a.UserID, OrderID: a.OrderID, State: SeatHeld, Paid: true, PaidAt: &paidAt, JoinedAt: now})
	default:
		return
	}
	if g.Status == StatusOpen && g.complete() {
		g.Status = StatusSucceeded
		g.ClosedAt = &now
		g.emit(events.TopicGroupSucceeded, "", "", now)
	}
}

// complete reports whether group_size seats are paid, every payment before the deadline.
func (g *Group) complete() bool {
	if len(g.Seats) < g.GroupSize {
		return false
	}
	for _, s := range g.Seats {
		if !s.Paid || s.PaidAt == nil || s.PaidAt.After(g.ExpiresAt) {
			return false
		}
	}
	return true
}

// MemberLeft frees the unpaid seat of an order that was cancelled or expired, while the group
// is open; a decided group's seats are its history.
func (g *Group) MemberLeft(a LeftArgs) {
	i := g.seatOfOrder(a.OrderID)
	if i < 0 || g.Status != StatusOpen || g.Seats[i].Paid {
		return
	}
	g.Seats = slices.Delete(g.Seats, i, i+1)
}

// Deadline handles the deadline reminder: a group still open fails. The first firing's time
// is recorded (deadline_fired_at). It reports false for a firing before the deadline, which
// changes nothing (the reminder's period brings it back).
func (g *Group) Deadline(now time.Time) bool {
	if !g.Exists() || now.Before(g.ExpiresAt) {
		return false
	}
	if g.DeadlineFiredAt == nil {
		g.DeadlineFiredAt = &now
	}
	if g.Status != StatusOpen {
		return true
	}
	if g.complete() {
		g.Status = StatusSucceeded
		g.ClosedAt = &now
		g.emit(events.TopicGroupSucceeded, "", "", now)
		return true
	}
	// Announced even for a group never opened: its leader's order may exist (the open flow
	// died after placing it), and the order app cancels or refunds every order of the group.
	g.Status = StatusFailed
	g.ClosedAt = &now
	g.emit(events.TopicGroupFailed, "", "", now)
	return true
}

// Reap frees unpaid seats that stayed "reserving" for reserveTimeout: their join flow died
// (a previous version's group app crashed between Join and SeatConfirmed, and the client
// never retried).
func (g *Group) Reap(now time.Time, reserveTimeout time.Duration) {
	if g.Status != StatusOpen {
		return
	}
	g.Seats = slices.DeleteFunc(g.Seats, func(s Seat) bool {
		return s.State == SeatReserving && !s.Paid && now.Sub(s.JoinedAt) >= reserveTimeout
	})
}

// emit adds an event about the group as it is now to the outbox. userID and orderID name the
// member an opened/joined event is about.
func (g *Group) emit(typ, userID, orderID string, now time.Time) {
	members := make([]events.Member, 0, len(g.Seats))
	for _, s := range g.Seats {
		members = append(members, events.Member{UserID: s.UserID, OrderID: s.OrderID, Paid: s.Paid})
	}
	g.Outbox = append(g.Outbox, events.GroupV1{
		V:          1,
		EventID:    events.GroupEventID(g.ID, typ, orderID),
		Type:       typ,
		GroupID:    g.ID,
		DealID:     g.DealID,
		Status:     string(g.Status),
		GroupSize:  g.GroupSize,
		SeatsTaken: len(g.Seats),
		Paid:       g.PaidCount(),
		Members:    members,
		UserID:     userID,
		ExpiresAt:  g.ExpiresAt,
		OccurredAt: now,
	})
}

// View is the public form of a group (DESIGN.md §4).
type View struct {
	ID         string    `json:"id"`
	DealID     string    `json:"deal_id"`
	Status     Status    `json:"status"`
	GroupSize  int       `json:"group_size"`
	SeatsTaken int       `json:"seats_taken"`
	Paid       int       `json:"paid"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// ViewOf renders a group.
func ViewOf(g Group) View {
	return View{ID: g.ID, DealID: g.DealID, Status: g.Status, GroupSize: g.GroupSize,
		SeatsTaken: len(g.Seats), Paid: g.PaidCount(), ExpiresAt: g.ExpiresAt}
}
