package actorhost_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost/statetest"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

type reminder struct {
	Due    time.Time
	Period time.Duration
}

// fakeReminders is the scheduler: registered reminders by actor id and name.
type fakeReminders struct {
	mu   sync.Mutex
	regs map[string]reminder
}

func (r *fakeReminders) Register(_ context.Context, id, name string, due time.Time, period time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.regs[id+"/"+name] = reminder{due, period}
	return nil
}

func (r *fakeReminders) Delete(_ context.Context, id, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.regs, id+"/"+name)
	return nil
}

func (r *fakeReminders) get(id string) (reminder, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rem, ok := r.regs[id+"/deadline"]
	return rem, ok
}

// fakePub records published events; fail makes publishing fail.
type fakePub struct {
	mu     sync.Mutex
	events []events.GroupV1
	fail   bool
}

func (p *fakePub) PublishGroup(_ context.Context, e events.GroupV1) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return problem.New(problem.CodeUnavailable, "broker down")
	}
	p.events = append(p.events, e)
	return nil
}

func (p *fakePub) setFail(b bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fail = b
}

func (p *fakePub) ids() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		out = append(out, e.EventID)
	}
	return out
}

// syncRelay publishes what it is handed at once, through the env's broker, and remembers
// what it published (the real relay does it a moment later, on its workers).
type syncRelay struct {
	pub  *fakePub
	mu   sync.Mutex
	done map[string]bool
	hand int // events handed over that were not published yet
}

func (r *syncRelay) Hand(ctx context.Context, evs []events.GroupV1) {
	for _, e := range evs {
		if r.Published(e.EventID) {
			continue
		}
		r.mu.Lock()
		r.hand++
		r.mu.Unlock()
		if r.pub.PublishGroup(ctx, e) == nil {
			r.mu.Lock()
			r.done[e.EventID] = true
			r.mu.Unlock()
		}
	}
}

func (r *syncRelay) Published(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.done[id]
}

// fakeOrders is the order app: idempotent by order id; fail answers a business error or an
// outage for a user's next calls.
type fakeOrders struct {
	mu     sync.Mutex
	placed map[string]group.OrderRequest
	fail   map[string]error
}

func (f *fakeOrders) PlaceGroupOrder(_ context.Context, r group.OrderRequest) (group.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[r.UserID]; err != nil {
		return group.Order{}, err
	}
	f.placed[r.OrderID] = r
	raw, _ := json.Marshal(map[string]any{"id": r.OrderID, "status": "pending_payment", "group_id": r.GroupID})
	return group.Order{ID: r.OrderID, Status: "pending_payment", Raw: raw}, nil
}

func (f *fakeOrders) setFail(user string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[user] = err
}

func (f *fakeOrders) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.placed)
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

type env struct {
	h      http.Handler
	state  *statetest.Memory
	rem    *fakeReminders
	pub    *fakePub
	relay  *syncRelay
	orders *fakeOrders
	clock  *clock
}

var hostConfig = actorhost.Config{ReserveTimeout: 30 * time.Second, ReminderPeriod: 30 * time.Second, IdleTimeout: time.Hour, DrainTimeout: 30 * time.Second}

func newEnv() *env {
	e := &env{state: statetest.NewMemory(), rem: &fakeReminders{regs: map[string]reminder{}}, pub: &fakePub{},
		orders: &fakeOrders{placed: map[string]group.OrderRequest{}, fail: map[string]error{}}, clock: &clock{now: t0}}
	e.relay = &syncRelay{pub: e.pub, done: map[string]bool{}}
	e.h = e.host(e.state, e.clock)
	return e
}

// host returns another host over the env's scheduler, broker and order app (as after a
// rebalance, with its own view of the state and its own clock).
func (e *env) host(state actorhost.State, c *clock) http.Handler {
	host := actorhost.New(hostConfig, actorhost.Deps{State: state, Reminders: e.rem, Pub: e.pub, Relay: e.relay, Orders: e.orders,
		Log: slog.New(slog.DiscardHandler), Now: c.Now})
	r := chi.NewRouter()
	host.Routes(r)
	return r
}

// call sends a method call as the sidecar does and decodes the 200 answer.
func (e *env) call(t *testing.T, id, method string, body any) (actorhost.Reply, int) {
	t.Helper()
	b, _ := json.Marshal(body)
	req := httptest.NewRequest(http.MethodPut, "/actors/GroupActor/"+id+"/method/"+method, strings.NewReader(string(b)))
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	var out actorhost.Reply
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("decode %s answer %q: %v", method, rec.Body, err)
		}
	}
	return out, rec.Code
}

func (e *env) remind(t *testing.T, id string) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPut, "/actors/GroupActor/"+id+"/method/remind/deadline", strings.NewReader(`{"dueTime":"","period":"30s"}`))
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	return rec.Code
}

// openGroup opens g1 (expiring at t0+1m) with u1's seat and order, in one turn.
func (e *env) openGroup(t *testing.T, size int) {
	t.Helper()
	if r, code := e.call(t, "g1", "OpenSeat", group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: size, ExpiresAt: t0.Add(time.Minute), UserID: "u1", OrderID: "o1"}); code != 200 || r.Problem != nil || len(r.Order) == 0 {
		t.Fatalf("OpenSeat: %d %+v", code, r)
	}
}

// join takes a seat for user with order in g1, in one turn.
func (e *env) join(t *testing.T, user, order string) actorhost.Reply {
	t.Helper()
	r, code := e.call(t, "g1", "JoinSeat", group.SeatArgs{UserID: user, OrderID: order})
	if code != 200 {
		t.Fatalf("JoinSeat %s: %d", user, code)
	}
	return r
}

func TestConfig(t *testing.T) {
	t.Parallel()
	e := newEnv()
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/dapr/config", nil))
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"entities": []any{"GroupActor"}, "actorIdleTimeout": "1h0m0s", "drainOngoingCallTimeout": "30s", "drainRebalancedActors": true}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("config (-got +want):\n%s", diff)
	}
}

func TestOpenRegistersReminderAndAnnounces(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 3)
	if rem, ok := e.rem.get("g1"); !ok || !rem.Due.Equal(t0.Add(time.Minute)) || rem.Period != 30*time.Second {
		t.Errorf("reminder %+v registered=%v, want due at expires_at", rem, ok)
	}
	// One save: the reminder is registered before it, the event handed over after it.
	g := e.state.Group("g1")
	if !g.ReminderSet || !g.Opened || len(g.Outbox) != 1 || e.state.Saves() != 1 {
		t.Errorf("state %+v after %d saves", g, e.state.Saves())
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
	// The published event leaves the outbox with the next save; nothing is published twice.
	e.join(t, "u2", "o2")
	if g := e.state.Group("g1"); len(g.Outbox) != 1 || g.Outbox[0].EventID != "g1:group.joined:o2" {
		t.Errorf("outbox after the next turn %+v", g.Outbox)
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened", "g1:group.joined:o2"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
}

// An event the relay could not publish stays in the outbox and is handed over again by the
// group's next turn; a group's final turn publishes whatever is left itself.
func TestUnpublishedEventsAreHandedOverAgain(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.pub.setFail(true)
	e.openGroup(t, 3)
	if len(e.pub.ids()) != 0 || len(e.state.Group("g1").Outbox) != 1 {
		t.Fatalf("with the broker down: published %v, outbox %+v", e.pub.ids(), e.state.Group("g1").Outbox)
	}
	e.pub.setFail(false)
	e.call(t, "g1", "Get", nil)
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened"}); diff != "" {
		t.Errorf("published after the next turn (-got +want):\n%s", diff)
	}
	e.pub.setFail(true)
	e.join(t, "u2", "o2")
	e.pub.setFail(false)
	e.clock.Set(t0.Add(time.Minute))
	if code := e.remind(t, "g1"); code != http.StatusOK {
		t.Fatalf("deadline: %d", code)
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened", "g1:group.joined:o2", "g1:group.failed"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
	if g := e.state.Group("g1"); len(g.Outbox) != 0 || g.ReminderSet {
		t.Errorf("decided group %+v, want its outbox empty and the reminder dropped", g)
	}
}

func TestBusinessErrorsAre200s(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 2)
	e.join(t, "u2", "o2")
	r, code := e.call(t, "g1", "JoinSeat", group.SeatArgs{UserID: "u3", OrderID: "o3"})
	if code != 200 || r.Problem == nil || r.Problem.Code != problem.CodeGroupFull {
		t.Errorf("full: %d %+v", code, r)
	}
	r, code = e.call(t, "nope", "Get", nil)
	if code != 200 || r.Problem == nil || r.Problem.Code != problem.CodeNotFound {
		t.Errorf("get unknown group: %d %+v", code, r)
	}
	if _, code := e.call(t, "g1", "Explode", nil); code != http.StatusNotFound {
		t.Errorf("unknown method: %d, want 404", code)
	}
}

func TestStateOutageIsNot200(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.state.FailGet(errors.New("redis down"))
	if _, code := e.call(t, "g1", "Get", nil); code == http.StatusOK {
		t.Errorf("state outage answered 200")
	}
	if code := e.remind(t, "g1"); code == http.StatusOK {
		t.Errorf("reminder during a state outage answered 200: the scheduler would not retry")
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 3)
	e.call(t, "g1", "MemberPaid", group.PaidArgs{OrderID: "o1", UserID: "u1", PaidAt: t0})
	e.clock.Set(t0.Add(time.Minute + 40*time.Millisecond))
	e.pub.setFail(true)
	if code := e.remind(t, "g1"); code == http.StatusOK {
		t.Errorf("reminder answered 200 with the broker down")
	}
	g := e.state.Group("g1")
	if g.Status != group.StatusFailed || len(g.Outbox) != 1 || !g.ReminderSet {
		t.Fatalf("after a firing whose publish failed: %+v (want failed, outbox kept, reminder kept)", g)
	}
	// The next firing publishes the saved outcome and drops the reminder.
	e.pub.setFail(false)
	e.clock.Set(t0.Add(90 * time.Second))
	if code := e.remind(t, "g1"); code != http.StatusOK {
		t.Fatalf("second firing: %d", code)
	}
	g = e.state.Group("g1")
	if len(g.Outbox) != 0 || g.ReminderSet || !g.DeadlineFiredAt.Equal(t0.Add(time.Minute+40*time.Millisecond)) {
		t.Errorf("after the second firing: %+v", g)
	}
	if _, ok := e.rem.get("g1"); ok {
		t.Errorf("reminder still registered")
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened", "g1:group.failed"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
	// Late payments and joins change nothing.
	e.call(t, "g1", "MemberPaid", group.PaidArgs{OrderID: "o1", UserID: "u1", PaidAt: t0})
	if r := e.join(t, "u9", "o9"); r.Problem == nil || r.Problem.Code != problem.CodeGroupClosed {
		t.Errorf("join after failure: %+v", r)
	}
}

func TestSuccessDropsReminder(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 2)
	e.join(t, "u2", "o2")
	e.call(t, "g1", "MemberPaid", group.PaidArgs{OrderID: "o1", UserID: "u1", PaidAt: t0})
	r, _ := e.call(t, "g1", "MemberPaid", group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: t0})
	if r.Group == nil || r.Group.Status != group.StatusSucceeded {
		t.Fatalf("after the last payment: %+v", r)
	}
	if _, ok := e.rem.get("g1"); ok {
		t.Errorf("reminder of a decided group still registered")
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened", "g1:group.joined:o2", "g1:group.succeeded"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
}

func TestStrayReminderIsDeleted(t *testing.T) {
	t.Parallel()
	e := newEnv()
	_ = e.rem.Register(context.Background(), "ghost", "deadline", t0, time.Minute)
	if code := e.remind(t, "ghost"); code != http.StatusOK {
		t.Errorf("stray firing: %d", code)
	}
	if _, ok := e.rem.get("ghost"); ok {
		t.Errorf("stray reminder kept")
	}
}

// Concurrent joins (calls the sidecar would serialize; here they come at once, as when a
// timed-out call is retried while the first still runs) never exceed group_size.
func TestConcurrentJoinsNeverOverfill(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 5)
	var wg sync.WaitGroup
	codes := make(chan problem.Code, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, _ := e.call(t, "g1", "JoinSeat", group.SeatArgs{UserID: fmt.Sprintf("m%d", i), OrderID: fmt.Sprintf("mo%d", i)})
			if r.Problem != nil {
				codes <- r.Problem.Code
				return
			}
			codes <- ""
		}()
	}
	wg.Wait()
	close(codes)
	counts := map[problem.Code]int{}
	for c := range codes {
		counts[c]++
	}
	if counts[""] != 4 || counts[problem.CodeGroupFull] != 36 {
		t.Errorf("answers %v, want 4 seats and 36 group-full", counts)
	}
	if n := len(e.state.Group("g1").Seats); n != 5 {
		t.Errorf("%d seats stored, want 5", n)
	}
	if n := e.orders.count(); n != 5 {
		t.Errorf("%d orders placed, want 5 (a full group places none)", n)
	}
}

// pausedState is one host's view of a state store shared by two hosts (an actor moved to a
// new host while the old one still runs a turn). pauseGet, when set, is called after each
// Get, before it returns.
type pausedState struct {
	*statetest.Memory
	pauseGet func()
}

func (s *pausedState) Get(ctx context.Context, id string) (group.Group, string, bool, error) {
	g, version, found, err := s.Memory.Get(ctx, id)
	if s.pauseGet != nil {
		s.pauseGet()
	}
	return g, version, found, err
}

// serve sends a method call or reminder firing to h and returns the status (usable from any
// goroutine: it never fails the test).
func serve(h http.Handler, path, body string) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/actors/GroupActor/g1/method/"+path, strings.NewReader(body)))
	return rec.Code
}

// Loss window 7 (issue 8): after a rebalance the old host may still be running a turn it
// started on state the new host has since changed. Both turns read the same version; the
// second save must fail and its outcome must not be published or overwrite the first.
func TestStaleTurnAfterRebalanceCannotOverwriteOrPublish(t *testing.T) {
	t.Parallel()
	e := newEnv() // the new host, after the rebalance
	e.openGroup(t, 2)
	e.join(t, "u2", "o2")
	e.call(t, "g1", "MemberPaid", group.PaidArgs{OrderID: "o1", UserID: "u1", PaidAt: t0})

	// The old host runs the last member's payment (which would make the group succeed) and
	// stalls right after reading the state.
	loaded, resume := make(chan struct{}), make(chan struct{})
	var once sync.Once
	oldState := &pausedState{Memory: e.state, pauseGet: func() {
		once.Do(func() { close(loaded); <-resume })
	}}
	oldClock := &clock{now: t0.Add(30 * time.Second)}
	oldRouter := e.host(oldState, oldClock)
	paidBody, _ := json.Marshal(group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: t0.Add(30 * time.Second)})
	oldCode := make(chan int, 1)
	go func() { oldCode <- serve(oldRouter, "MemberPaid", string(paidBody)) }()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	select {
	case <-loaded:
	case <-ctx.Done():
		t.Fatal("the old host's turn never read the state")
	}

	// Meanwhile the new host handles the deadline: the group fails.
	e.clock.Set(t0.Add(time.Minute + time.Second))
	if code := e.remind(t, "g1"); code != http.StatusOK {
		t.Fatalf("deadline firing on the new host: %d", code)
	}
	close(resume)
	var code int
	select {
	case code = <-oldCode:
	case <-ctx.Done():
		t.Fatal("the old host's turn never ended")
	}

	if code == http.StatusOK {
		t.Errorf("stale turn answered 200; want a failure the sidecar retries on the new host")
	}
	if g := e.state.Group("g1"); g.Status != group.StatusFailed || g.Seats[1].Paid {
		t.Errorf("stored group %+v: the stale turn overwrote the new host's outcome", g)
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened", "g1:group.joined:o2", "g1:group.failed"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
}

// hookedState runs afterSave once, after the first save that lands.
type hookedState struct {
	*statetest.Memory
	once      sync.Once
	afterSave func()
}

func (s *hookedState) Save(ctx context.Context, id string, g group.Group, version string) (string, error) {
	v, err := s.Memory.Save(ctx, id, g, version)
	if err == nil {
		s.once.Do(s.afterSave)
	}
	return v, err
}

// The other interleaving: the old host saves the outcome, the new host's turn runs right after
// that save, and the old host's closing save (outbox sent, reminder dropped) is stale. The new
// host's state stays; the outcome, already durable, is announced under its one event id.
func TestStaleClosingSaveKeepsTheNewerState(t *testing.T) {
	t.Parallel()
	e := newEnv() // the new host
	e.openGroup(t, 2)
	e.join(t, "u2", "o2")
	e.call(t, "g1", "MemberPaid", group.PaidArgs{OrderID: "o1", UserID: "u1", PaidAt: t0})

	var newCode int
	oldState := &hookedState{Memory: e.state, afterSave: func() {
		// The deadline fires on the new host between the old host's two saves.
		e.clock.Set(t0.Add(time.Minute + time.Second))
		newCode = e.remind(t, "g1")
	}}
	oldClock := &clock{now: t0.Add(30 * time.Second)}
	oldRouter := e.host(oldState, oldClock)
	paidBody, _ := json.Marshal(group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: t0.Add(30 * time.Second)})

	oldCode := serve(oldRouter, "MemberPaid", string(paidBody))

	if newCode != http.StatusOK {
		t.Errorf("deadline firing on the new host: %d", newCode)
	}
	if oldCode == http.StatusOK {
		t.Errorf("the old host's turn answered 200 although its closing save was stale")
	}
	g := e.state.Group("g1")
	if g.Status != group.StatusSucceeded || g.DeadlineFiredAt == nil || len(g.Outbox) != 0 || g.ReminderSet {
		t.Errorf("stored group %+v, want the new host's: succeeded, deadline handled, outbox sent, reminder dropped", g)
	}
	for _, id := range e.pub.ids() {
		if id == "g1:group.failed" {
			t.Errorf("published %v: a group that succeeded announced a failure", e.pub.ids())
		}
	}
	if _, ok := e.rem.get("g1"); ok {
		t.Errorf("reminder of a decided group still registered")
	}
}

// A seat is taken in one turn: the member's order is placed inside it (due when the group
// ends) and the seat is held and announced, with no "reserving" state ever stored.
func TestSeatTakenInOneTurn(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 3)
	saves := e.state.Saves()
	r := e.join(t, "u2", "o2")
	if r.Problem != nil || r.Group == nil || len(r.Group.Seats) != 2 || r.Group.Seats[1].State != group.SeatHeld {
		t.Fatalf("JoinSeat: %+v", r)
	}
	var o struct{ ID string }
	if err := json.Unmarshal(r.Order, &o); err != nil || o.ID != "o2" {
		t.Errorf("order in the answer %s (%v)", r.Order, err)
	}
	if p := e.orders.placed["o2"]; p.GroupID != "g1" || p.DealID != "d1" || p.UserID != "u2" || !p.PayBy.Equal(t0.Add(time.Minute)) {
		t.Errorf("order request %+v", p)
	}
	if g := e.state.Group("g1"); len(g.Seats) != 2 || g.Seats[1].State != group.SeatHeld {
		t.Errorf("stored seats %+v", g.Seats)
	}
	if n := e.state.Saves() - saves; n > 2 {
		t.Errorf("%d saves for one seat", n)
	}
	// A replay answers the same seat and order and places nothing new.
	again := e.join(t, "u2", "o2")
	if again.Problem != nil || string(again.Order) != string(r.Order) || len(again.Group.Seats) != 2 || e.orders.count() != 2 {
		t.Errorf("replay: %+v, %d orders", again, e.orders.count())
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened", "g1:group.joined:o2"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
}

func TestSeatOrderRefusedFreesTheSeat(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 2)
	e.orders.setFail("u2", problem.New(problem.CodeSoldOut, "sold out"))
	if r := e.join(t, "u2", "o2"); r.Problem == nil || r.Problem.Code != problem.CodeSoldOut {
		t.Fatalf("JoinSeat with the order refused: %+v", r)
	}
	if g := e.state.Group("g1"); len(g.Seats) != 1 {
		t.Errorf("seats %+v, want the leader's only", g.Seats)
	}
	// The freed seat is there for the next member.
	if r := e.join(t, "u3", "o3"); r.Problem != nil {
		t.Errorf("next member: %+v", r.Problem)
	}
	// A leader whose order is refused ends the group unannounced.
	e.orders.setFail("u7", problem.New(problem.CodeSoldOut, "sold out"))
	r, code := e.call(t, "g7", "OpenSeat", group.OpenArgs{GroupID: "g7", DealID: "d1", GroupSize: 2, ExpiresAt: t0.Add(time.Minute), UserID: "u7", OrderID: "o7"})
	if code != 200 || r.Problem == nil || r.Problem.Code != problem.CodeSoldOut {
		t.Fatalf("OpenSeat with the order refused: %d %+v", code, r)
	}
	if g := e.state.Group("g7"); g.Status != group.StatusFailed || g.Visible() {
		t.Errorf("group of a refused leader %+v", g)
	}
	if diff := cmp.Diff(e.pub.ids(), []string{"g1:group.opened", "g1:group.joined:o3"}); diff != "" {
		t.Errorf("published (-got +want):\n%s", diff)
	}
}

// An outage of the order app fails the turn (non-200: the sidecar or the client retries) and
// saves nothing; the retry places the same order and takes the seat.
func TestSeatOrderOutageSavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv()
	e.openGroup(t, 2)
	saves := e.state.Saves()
	e.orders.setFail("u2", problem.New(problem.CodeUnavailable, "order app down"))
	if _, code := e.call(t, "g1", "JoinSeat", group.SeatArgs{UserID: "u2", OrderID: "o2"}); code == http.StatusOK {
		t.Fatalf("JoinSeat during an order outage answered 200")
	}
	if n := e.state.Saves(); n != saves {
		t.Errorf("%d saves by a failed turn", n-saves)
	}
	e.orders.setFail("u2", nil)
	if r := e.join(t, "u2", "o2"); r.Problem != nil || len(r.Group.Seats) != 2 {
		t.Errorf("retry: %+v", r)
	}
}

// The previous version took a seat in three turns; its replicas still call those methods
// during a rolling upgrade.
func TestPreviousVersionSeatMethods(t *testing.T) {
	t.Parallel()
	e := newEnv()
	for _, c := range []struct {
		method string
		body   any
	}{
		{"Open", group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: 3, ExpiresAt: t0.Add(time.Minute), UserID: "u1", OrderID: "o1"}},
		{"SeatConfirmed", group.SeatArgs{UserID: "u1", OrderID: "o1"}},
		{"Join", group.SeatArgs{UserID: "u2", OrderID: "o2"}},
		{"SeatFailed", group.SeatArgs{UserID: "u2", OrderID: "o2"}},
		{"Join", group.SeatArgs{UserID: "u3", OrderID: "o3"}},
		{"SeatConfirmed", group.SeatArgs{UserID: "u3", OrderID: "o3"}},
	} {
		if r, code := e.call(t, "g1", c.method, c.body); code != 200 || r.Problem != nil {
			t.Fatalf("%s: %d %+v", c.method, code, r)
		}
	}
	g := e.state.Group("g1")
	if len(g.Seats) != 2 || g.Seats[1].UserID != "u3" || g.Seats[1].State != group.SeatHeld || !g.Opened {
		t.Errorf("group %+v", g)
	}
}
