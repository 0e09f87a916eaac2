package group_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// fakeActors runs the transitions of package group on in-memory states, one turn of a group
// at a time, as the sidecar and actorhost.Turn do: a turn whose transition fails transiently
// saves nothing. err (if set) fails the named method as an outage would. Seat turns place the
// member's order through orders.
type fakeActors struct {
	mu     sync.Mutex
	groups map[string]group.Group
	turns  map[string]*sync.Mutex
	orders group.Orders
	clock  func() time.Time
	errOn  map[string]error
	calls  []string
}

var (
	_ group.Actors = (*fakeActors)(nil)
	_ group.States = (*fakeActors)(nil)
)

func (f *fakeActors) turn(method, id string, op func(g *group.Group, now time.Time) error) (group.Group, error) {
	f.mu.Lock()
	f.calls = append(f.calls, method+" "+id)
	err := f.errOn[method]
	l := f.turns[id]
	if l == nil {
		l = &sync.Mutex{}
		f.turns[id] = l
	}
	f.mu.Unlock()
	if err != nil {
		return group.Group{}, err
	}
	l.Lock()
	defer l.Unlock()
	g, _, _ := f.Load(context.Background(), id)
	err = op(&g, f.clock())
	if err != nil && problem.CodeOf(err).Status() >= 500 {
		return group.Group{}, err // a failed turn saves nothing
	}
	g.Outbox = nil // published
	if g.Exists() {
		f.mu.Lock()
		f.groups[id] = g
		f.mu.Unlock()
	}
	if err != nil {
		return group.Group{}, err
	}
	return g, nil
}

func (f *fakeActors) seat(method, id string, reserve func(g *group.Group, now time.Time) error, a group.SeatArgs) (group.Seated, error) {
	var o group.Order
	g, err := f.turn(method, id, func(g *group.Group, now time.Time) error {
		if err := reserve(g, now); err != nil {
			return err
		}
		var err error
		o, err = group.PlaceSeat(context.Background(), f.orders, g, a, now, 30*time.Second)
		return err
	})
	if err != nil {
		return group.Seated{}, err
	}
	return group.Seated{Group: g, Order: o.Raw}, nil
}

func (f *fakeActors) OpenSeat(_ context.Context, id string, a group.OpenArgs) (group.Seated, error) {
	return f.seat("OpenSeat", id, func(g *group.Group, now time.Time) error { return group.Open(g, a, now) },
		group.SeatArgs{UserID: a.UserID, OrderID: a.OrderID})
}

func (f *fakeActors) JoinSeat(_ context.Context, id string, a group.SeatArgs) (group.Seated, error) {
	return f.seat("JoinSeat", id, func(g *group.Group, now time.Time) error { return g.Join(a, now, 30*time.Second) }, a)
}

func (f *fakeActors) MemberPaid(_ context.Context, id string, a group.PaidArgs) (group.Group, error) {
	return f.turn("MemberPaid", id, func(g *group.Group, now time.Time) error { g.MemberPaid(a, now); return nil })
}

func (f *fakeActors) MemberLeft(_ context.Context, id string, a group.LeftArgs) (group.Group, error) {
	return f.turn("MemberLeft", id, func(g *group.Group, _ time.Time) error { g.MemberLeft(a); return nil })
}

func (f *fakeActors) Get(_ context.Context, id string) (group.Group, error) {
	return f.turn("Get", id, func(g *group.Group, _ time.Time) error {
		if !g.Exists() {
			return group.ErrNotFound
		}
		return nil
	})
}

func (f *fakeActors) Load(_ context.Context, id string) (group.Group, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g, ok := f.groups[id]
	return g, ok, nil
}

func (f *fakeActors) group(id string) group.Group {
	g, _, _ := f.Load(context.Background(), id)
	return g
}

// fakeOrders is the order app: idempotent by order id; fail answers a business error or an
// outage for the next calls of a user.
type fakeOrders struct {
	mu     sync.Mutex
	orders map[string]group.OrderRequest
	fail   map[string]error // user id → error
	// onPlace, when set (before use), runs at the start of every call.
	onPlace func(r group.OrderRequest)
}

func (f *fakeOrders) PlaceGroupOrder(_ context.Context, r group.OrderRequest) (group.Order, error) {
	if f.onPlace != nil {
		f.onPlace(r)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[r.UserID]; err != nil {
		return group.Order{}, err
	}
	f.orders[r.OrderID] = r
	raw, _ := json.Marshal(map[string]any{"id": r.OrderID, "status": "pending_payment", "group_id": r.GroupID, "pay_by": r.PayBy})
	return group.Order{ID: r.OrderID, Status: "pending_payment", Raw: raw}, nil
}

func (f *fakeOrders) setFail(user string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[user] = err
}

type fakeDeals map[string]group.Deal

func (d fakeDeals) Deal(_ context.Context, id string) (group.Deal, error) {
	if x, ok := d[id]; ok {
		return x, nil
	}
	return group.Deal{}, problem.New(problem.CodeNotFound, "no deal")
}

type fakeIndex struct {
	mu      sync.Mutex
	entries map[string][]group.IndexEntry
}

func (x *fakeIndex) Add(_ context.Context, dealID, groupID string, expiresAt time.Time) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !slices.ContainsFunc(x.entries[dealID], func(e group.IndexEntry) bool { return e.GroupID == groupID }) {
		x.entries[dealID] = append(x.entries[dealID], group.IndexEntry{GroupID: groupID, ExpiresAt: expiresAt})
	}
	return nil
}

func (x *fakeIndex) List(_ context.Context, dealID string) ([]group.IndexEntry, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.entries[dealID]), nil
}

func (x *fakeIndex) Remove(_ context.Context, dealID string, ids []string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.entries[dealID] = slices.DeleteFunc(x.entries[dealID], func(e group.IndexEntry) bool { return slices.Contains(ids, e.GroupID) })
	return nil
}

type seqIDs struct {
	mu sync.Mutex
	n  int
}

func (s *seqIDs) NextString() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return "id" + strconv.Itoa(s.n)
}

type svcEnv struct {
	svc    *group.Service
	idem   *idempotency.Store[group.IdemRecord, *group.IdemRecord]
	actors *fakeActors
	orders *fakeOrders
	index  *fakeIndex
	mu     sync.Mutex
	now    time.Time
}

func (e *svcEnv) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *svcEnv) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = e.now.Add(d)
}

func newSvcEnv() *svcEnv {
	e := &svcEnv{now: t0}
	clock := e.clock
	e.orders = &fakeOrders{orders: map[string]group.OrderRequest{}, fail: map[string]error{}}
	e.actors = &fakeActors{groups: map[string]group.Group{}, turns: map[string]*sync.Mutex{}, orders: e.orders, clock: clock, errOn: map[string]error{}}
	e.index = &fakeIndex{entries: map[string][]group.IndexEntry{}}
	deals := fakeDeals{
		"gd":    {ID: "gd", Kind: "group", StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Hour), GroupSize: 2, GroupTTLSeconds: 600},
		"short": {ID: "short", Kind: "group", StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Minute), GroupSize: 2, GroupTTLSeconds: 600},
		"flash": {ID: "flash", Kind: "flash", StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(time.Hour)},
	}
	// The real Idempotency-Key store (daprstore.NewIdempotency) over the fake state client.
	e.idem = idempotency.New[group.IdemRecord](daprstate.New(daprstatetest.NewClient(), "statestore"), 24*time.Hour, clock)
	e.svc = group.NewService(group.Config{IdemLease: 30 * time.Second, IdemWait: 10 * time.Second, IndexRetention: time.Hour}, group.Deps{
		Actors: e.actors, States: e.actors, Deals: deals,
		Idem: e.idem, Index: e.index, IDs: &seqIDs{},
		Log: slog.New(slog.DiscardHandler), Now: clock,
	})
	return e
}

func user(id string) group.Caller { return group.Caller{ID: id} }

func decode(t *testing.T, r group.Reply) (group.Created, problem.Code) {
	t.Helper()
	if r.Status >= 400 {
		var doc problem.Document
		if err := json.Unmarshal(r.Body, &doc); err != nil {
			t.Fatal(err)
		}
		return group.Created{}, doc.Code
	}
	var c group.Created
	if err := json.Unmarshal(r.Body, &c); err != nil {
		t.Fatal(err)
	}
	return c, ""
}

func TestServiceOpen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		deal        string
		wantCode    problem.Code
		wantExpires time.Time
	}{
		{name: "opened", deal: "gd", wantExpires: t0.Add(10 * time.Minute)},
		{name: "the deadline never passes the deal's end", deal: "short", wantExpires: t0.Add(time.Minute)},
		{name: "flash deal", deal: "flash", wantCode: problem.CodeInvalidState},
		{name: "unknown deal", deal: "nope", wantCode: problem.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newSvcEnv()
			reply, err := e.svc.Open(context.Background(), user("u1"), tt.deal, "k")
			if err != nil {
				t.Fatal(err)
			}
			c, code := decode(t, reply)
			if code != tt.wantCode {
				t.Fatalf("code %q, want %q (%s)", code, tt.wantCode, reply.Body)
			}
			if code != "" {
				return
			}
			want := group.View{ID: "id1", DealID: tt.deal, Status: group.StatusOpen, GroupSize: 2, SeatsTaken: 1, ExpiresAt: tt.wantExpires}
			if diff := cmp.Diff(c.Group, want); diff != "" {
				t.Errorf("group (-got +want):\n%s", diff)
			}
			if o := e.orders.orders["id2"]; o.GroupID != "id1" || !o.PayBy.Equal(tt.wantExpires) || o.UserID != "u1" {
				t.Errorf("leader's order request %+v", o)
			}
			if l, _ := e.index.List(context.Background(), tt.deal); len(l) != 1 || l[0].GroupID != "id1" {
				t.Errorf("deal index %+v", l)
			}
			// Replaying the key returns the same answer without a second group.
			again, _ := e.svc.Open(context.Background(), user("u1"), tt.deal, "k")
			if string(again.Body) != string(reply.Body) || again.Status != 201 {
				t.Errorf("replay %d %s", again.Status, again.Body)
			}
			if len(e.actors.groups) != 1 {
				t.Errorf("%d groups", len(e.actors.groups))
			}
		})
	}
}

func TestServiceJoin(t *testing.T) {
	t.Parallel()
	open := func(t *testing.T, e *svcEnv) string {
		t.Helper()
		r, err := e.svc.Open(context.Background(), user("u1"), "gd", "k")
		if err != nil || r.Status != 201 {
			t.Fatalf("open: %v %d %s", err, r.Status, r.Body)
		}
		c, _ := decode(t, r)
		return c.Group.ID
	}
	t.Run("joined", func(t *testing.T) {
		t.Parallel()
		e := newSvcEnv()
		id := open(t, e)
		r, err := e.svc.Join(context.Background(), user("u2"), id, "j")
		if err != nil {
			t.Fatal(err)
		}
		c, code := decode(t, r)
		if code != "" || c.Group.SeatsTaken != 2 {
			t.Fatalf("join: %d %s", r.Status, r.Body)
		}
		if s := e.actors.group(id).Seats; len(s) != 2 || s[1].State != group.SeatHeld {
			t.Errorf("seats %+v", s)
		}
		r, _ = e.svc.Join(context.Background(), user("u3"), id, "j")
		if _, code := decode(t, r); code != problem.CodeGroupFull {
			t.Errorf("third member of two: %q", code)
		}
	})
	t.Run("refused order frees the seat", func(t *testing.T) {
		t.Parallel()
		e := newSvcEnv()
		id := open(t, e)
		e.orders.setFail("u2", problem.New(problem.CodeSoldOut, "sold out"))
		r, err := e.svc.Join(context.Background(), user("u2"), id, "j")
		if err != nil {
			t.Fatal(err)
		}
		if _, code := decode(t, r); code != problem.CodeSoldOut {
			t.Errorf("code %q, want sold-out", code)
		}
		if s := e.actors.group(id).Seats; len(s) != 1 {
			t.Errorf("seats %+v, want the leader's only", s)
		}
		// The outcome is stored with the key.
		e.orders.setFail("u2", nil)
		r, _ = e.svc.Join(context.Background(), user("u2"), id, "j")
		if _, code := decode(t, r); code != problem.CodeSoldOut {
			t.Errorf("replay code %q, want sold-out", code)
		}
	})
	t.Run("outage takes no seat, the retry takes it with the same order", func(t *testing.T) {
		t.Parallel()
		e := newSvcEnv()
		id := open(t, e)
		e.orders.setFail("u2", problem.New(problem.CodeUnavailable, "order app down"))
		if _, err := e.svc.Join(context.Background(), user("u2"), id, "j"); problem.CodeOf(err) != problem.CodeUnavailable {
			t.Fatalf("err %v, want unavailable", err)
		}
		if s := e.actors.group(id).Seats; len(s) != 1 {
			t.Fatalf("seats %+v, want the leader's only (the failed turn saved nothing)", s)
		}
		e.orders.setFail("u2", nil)
		r, err := e.svc.Join(context.Background(), user("u2"), id, "j")
		if err != nil || r.Status != 201 {
			t.Fatalf("retry: %v %d %s", err, r.Status, r.Body)
		}
		if s := e.actors.group(id).Seats; len(s) != 2 || s[1].State != group.SeatHeld || s[1].OrderID != "id3" {
			t.Errorf("seats %+v, want u2 held with the first attempt's order id", s)
		}
	})
	t.Run("same key for another group is refused", func(t *testing.T) {
		t.Parallel()
		e := newSvcEnv()
		id := open(t, e)
		if _, err := e.svc.Join(context.Background(), user("u2"), id, "j"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Join(context.Background(), user("u2"), "other", "j"); problem.CodeOf(err) != problem.CodeIdempotencyReused {
			t.Errorf("err %v, want idempotency-key-reused", err)
		}
		if _, err := e.svc.Join(context.Background(), user("u2"), id, ""); problem.CodeOf(err) != problem.CodeValidation {
			t.Errorf("no key: %v", err)
		}
	})
}

// Loss window 2 (issue 8) in the group app: a join that stalls past its key's lease (inside
// its seat's turn, waiting for the order app) is taken over by a retry. The retry's turn waits
// for the stale one, so it sees the seat as the stale turn left it: held if the order was
// placed, free if it was refused. Either way one answer is stored and both requests give it,
// and u2 holds at most one seat.
func TestServiceJoinStaleOwnerAfterLeaseTakeover(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		staleErr  error // the order app's answer to the stale join's call, and to the retry's
		wantCode  problem.Code
		wantSeats int
	}{
		{name: "order placed", wantSeats: 2},
		{name: "order refused", staleErr: problem.New(problem.CodeSoldOut, "sold out"), wantCode: problem.CodeSoldOut, wantSeats: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			e := newSvcEnv()
			r, err := e.svc.Open(ctx, user("u1"), "gd", "k")
			if err != nil || r.Status != 201 {
				t.Fatalf("open: %v %d %s", err, r.Status, r.Body)
			}
			c, _ := decode(t, r)
			id := c.Group.ID
			entered, release := make(chan struct{}), make(chan struct{})
			var once sync.Once
			e.orders.onPlace = func(r group.OrderRequest) {
				if r.UserID != "u2" {
					return
				}
				first := false
				once.Do(func() { first = true })
				if first {
					close(entered)
					<-release
				}
			}
			type result struct {
				reply group.Reply
				err   error
			}
			join := func() <-chan result {
				ch := make(chan result, 1)
				go func() {
					r, err := e.svc.Join(ctx, user("u2"), id, "j")
					ch <- result{r, err}
				}()
				return ch
			}
			stale := join()
			select {
			case <-entered:
			case <-ctx.Done():
				t.Fatal("the first join never reached the order app")
			}
			e.advance(31 * time.Second)
			retry := join()
			for joins := 0; joins < 2; {
				if ctx.Err() != nil {
					t.Fatal("the retry never called the actor")
				}
				time.Sleep(time.Millisecond)
				e.actors.mu.Lock()
				joins = len(slices.DeleteFunc(slices.Clone(e.actors.calls), func(c string) bool { return c != "JoinSeat "+id }))
				e.actors.mu.Unlock()
			}
			select {
			case r := <-retry:
				t.Fatalf("the retry answered %d %s while the stale turn held the group", r.reply.Status, r.reply.Body)
			case <-time.After(50 * time.Millisecond):
			}
			e.orders.setFail("u2", tt.staleErr)
			close(release)
			var got, again result
			for _, ch := range []struct {
				c   <-chan result
				out *result
			}{{stale, &got}, {retry, &again}} {
				select {
				case *ch.out = <-ch.c:
				case <-ctx.Done():
					t.Fatal("a join did not finish")
				}
			}
			if again.err != nil || got.err != nil {
				t.Fatalf("errors: stale %v, retry %v", got.err, again.err)
			}
			if _, code := decode(t, again.reply); code != tt.wantCode {
				t.Errorf("retry = %d %s, want code %q", again.reply.Status, again.reply.Body, tt.wantCode)
			}
			if got.reply.Status != again.reply.Status || string(got.reply.Body) != string(again.reply.Body) {
				t.Errorf("stale join = %d %s; want the retry's %d %s", got.reply.Status, got.reply.Body, again.reply.Status, again.reply.Body)
			}
			seats := e.actors.group(id).Seats
			if len(seats) != tt.wantSeats || (tt.wantSeats == 2 && (seats[1].UserID != "u2" || seats[1].State != group.SeatHeld)) {
				t.Errorf("seats %+v, want %d", seats, tt.wantSeats)
			}
			rec, _, err := e.idem.Get(ctx, "u2", "j")
			if err != nil || !rec.Done || rec.Status != again.reply.Status || string(rec.Body) != string(again.reply.Body) {
				t.Errorf("stored reply = %d %s (%v), want the retry's", rec.Status, rec.Body, err)
			}
		})
	}
}

func TestServiceOrderEvents(t *testing.T) {
	t.Parallel()
	e := newSvcEnv()
	r, _ := e.svc.Open(context.Background(), user("u1"), "gd", "k")
	c, _ := decode(t, r)
	id := c.Group.ID
	if _, err := e.svc.Join(context.Background(), user("u2"), id, "j"); err != nil {
		t.Fatal(err)
	}
	ev := func(typ, orderID, userID string) events.OrderV1 {
		return events.NewOrderV1(typ, orderID, userID, "gd", id, 1, 700, "", t0)
	}
	// A flash order's event is ignored.
	if err := e.svc.OrderEvent(context.Background(), events.NewOrderV1(events.TopicOrderPaid, "f1", "u9", "flash", "", 1, 1, "paid", t0)); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.OrderEvent(context.Background(), ev(events.TopicOrderCancelled, "id3", "u2")); err != nil {
		t.Fatal(err)
	}
	if n := len(e.actors.group(id).Seats); n != 1 {
		t.Errorf("%d seats after the member's order was cancelled, want 1", n)
	}
	for _, u := range []struct{ order, user string }{{"id2", "u1"}, {"id9", "u3"}} {
		if err := e.svc.OrderEvent(context.Background(), ev(events.TopicOrderPaid, u.order, u.user)); err != nil {
			t.Fatal(err)
		}
	}
	if g := e.actors.group(id); g.Status != group.StatusSucceeded {
		t.Errorf("group %+v, want succeeded", g)
	}
	// An unknown group is not retried; an outage is.
	if err := e.svc.OrderEvent(context.Background(), events.NewOrderV1(events.TopicOrderPaid, "x", "u1", "gd", "ghost", 1, 1, "paid", t0)); err != nil {
		t.Errorf("unknown group: %v", err)
	}
	e.actors.errOn["MemberPaid"] = problem.New(problem.CodeUnavailable, "sidecar down")
	if err := e.svc.OrderEvent(context.Background(), ev(events.TopicOrderPaid, "id2", "u1")); err == nil {
		t.Errorf("outage not reported")
	}
}

func TestServiceList(t *testing.T) {
	t.Parallel()
	e := newSvcEnv()
	for i := range 3 {
		if _, err := e.svc.Open(context.Background(), user(fmt.Sprint("u", i)), "gd", "k"); err != nil {
			t.Fatal(err)
		}
		e.advance(time.Second)
	}
	// Fail the first group, long ago: it leaves the listing and the index.
	g := e.actors.groups["id1"]
	g.Deadline(g.ExpiresAt)
	e.actors.groups["id1"] = g
	e.advance(g.ExpiresAt.Add(2 * time.Hour).Sub(e.clock()))
	open, err := e.svc.List(context.Background(), "gd", "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range open {
		got = append(got, v.ID+":"+string(v.Status))
	}
	if diff := cmp.Diff(got, []string{"id3:open", "id5:open"}); diff != "" {
		t.Errorf("listing (-got +want):\n%s", diff)
	}
	if l, _ := e.index.List(context.Background(), "gd"); len(l) != 2 {
		t.Errorf("index after pruning: %+v", l)
	}
	if _, err := e.svc.List(context.Background(), "gd", "closed"); problem.CodeOf(err) != problem.CodeValidation {
		t.Errorf("bad status filter: %v", err)
	}
}

// Reading a group that does not exist activates no actor: the saved state answers.
func TestGetUnknownGroupActivatesNoActor(t *testing.T) {
	t.Parallel()
	e := newSvcEnv()
	if _, err := e.svc.Get(context.Background(), "254151373430460416"); !errors.Is(err, group.ErrNotFound) {
		t.Fatalf("Get(unknown) = %v, want not found", err)
	}
	e.actors.mu.Lock()
	calls := slices.Clone(e.actors.calls)
	e.actors.mu.Unlock()
	if len(calls) != 0 {
		t.Errorf("actor calls %v for an unknown group, want none", calls)
	}
}
