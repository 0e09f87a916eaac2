package group_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/events"
)

var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

const reserve = 30 * time.Second

func ptr[T any](v T) *T { return &v }

// opened is a public group of size with the leader u1 (order o1) held and unpaid, expiring
// at t0+1m.
func opened(size int) group.Group {
	var g group.Group
	if err := group.Open(&g, group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: size, ExpiresAt: t0.Add(time.Minute), UserID: "u1", OrderID: "o1"}, t0); err != nil {
		panic(err)
	}
	if err := g.ConfirmSeat(group.SeatArgs{UserID: "u1", OrderID: "o1"}, t0, reserve); err != nil {
		panic(err)
	}
	g.Outbox = nil
	return g
}

// withSeats adds held seats u2/o2, u3/o3, ... to g.
func withSeats(g group.Group, n int) group.Group {
	for i := range n {
		id := string(rune('2' + i))
		g.Seats = append(g.Seats, group.Seat{UserID: "u" + id, OrderID: "o" + id, State: group.SeatHeld, JoinedAt: t0})
	}
	return g
}

func paid(g group.Group, at time.Time, orders ...string) group.Group {
	for i := range g.Seats {
		for _, o := range orders {
			if g.Seats[i].OrderID == o {
				g.Seats[i].Paid, g.Seats[i].PaidAt = true, ptr(at)
			}
		}
	}
	return g
}

func types(g group.Group) []string {
	var out []string
	for _, e := range g.Outbox {
		out = append(out, e.Type)
	}
	return out
}

func TestOpen(t *testing.T) {
	t.Parallel()
	args := group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: 3, ExpiresAt: t0.Add(time.Minute), UserID: "u1", OrderID: "o1"}
	tests := []struct {
		name    string
		start   group.Group
		args    group.OpenArgs
		now     time.Time
		wantErr error
		want    group.Group
	}{
		{
			name: "new group with the leader's seat reserving",
			args: args, now: t0,
			want: group.Group{ID: "g1", DealID: "d1", Status: group.StatusOpen, GroupSize: 3, ExpiresAt: t0.Add(time.Minute),
				Seats: []group.Seat{{UserID: "u1", OrderID: "o1", State: group.SeatReserving, JoinedAt: t0}}, LeaderID: "u1", LeaderOrderID: "o1", CreatedAt: t0},
		},
		{
			name: "replay changes nothing",
			start: group.Group{ID: "g1", DealID: "d1", Status: group.StatusOpen, GroupSize: 3, ExpiresAt: t0.Add(time.Minute),
				Seats: []group.Seat{{UserID: "u1", OrderID: "o1", State: group.SeatReserving, JoinedAt: t0}}, LeaderID: "u1", LeaderOrderID: "o1", CreatedAt: t0},
			args: args, now: t0.Add(time.Second),
			want: group.Group{ID: "g1", DealID: "d1", Status: group.StatusOpen, GroupSize: 3, ExpiresAt: t0.Add(time.Minute),
				Seats: []group.Seat{{UserID: "u1", OrderID: "o1", State: group.SeatReserving, JoinedAt: t0}}, LeaderID: "u1", LeaderOrderID: "o1", CreatedAt: t0},
		},
		{
			name:  "another leader on the same id",
			start: group.Group{ID: "g1", LeaderID: "u9", LeaderOrderID: "o9", Status: group.StatusOpen},
			args:  args, now: t0, wantErr: group.ErrIDConflict,
			want: group.Group{ID: "g1", LeaderID: "u9", LeaderOrderID: "o9", Status: group.StatusOpen},
		},
		{
			name: "deadline already passed",
			args: args, now: t0.Add(time.Minute), wantErr: group.ErrClosed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := tt.start
			err := group.Open(&g, tt.args, tt.now)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(g, tt.want); diff != "" {
				t.Errorf("group mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestJoin(t *testing.T) {
	t.Parallel()
	u := func(n string) group.SeatArgs { return group.SeatArgs{UserID: "u" + n, OrderID: "o" + n} }
	stale := withSeats(opened(3), 0)
	stale.Seats = append(stale.Seats, group.Seat{UserID: "u2", OrderID: "o2", State: group.SeatReserving, JoinedAt: t0.Add(-time.Minute)})
	unopened := group.Group{}
	_ = group.Open(&unopened, group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: 3, ExpiresAt: t0.Add(time.Minute), UserID: "u1", OrderID: "o1"}, t0)
	failed := opened(3)
	failed.Status = group.StatusFailed
	tests := []struct {
		name      string
		start     group.Group
		args      group.SeatArgs
		now       time.Time
		wantErr   error
		wantSeats []string // user:state of each seat after
	}{
		{name: "seat reserved", start: opened(3), args: u("2"), now: t0, wantSeats: []string{"u1:held", "u2:reserving"}},
		{name: "last seat", start: withSeats(opened(3), 1), args: u("4"), now: t0, wantSeats: []string{"u1:held", "u2:held", "u4:reserving"}},
		{name: "full", start: withSeats(opened(3), 2), args: u("9"), now: t0, wantErr: group.ErrFull, wantSeats: []string{"u1:held", "u2:held", "u3:held"}},
		{name: "replay of the same seat", start: withSeats(opened(3), 2), args: u("2"), now: t0, wantSeats: []string{"u1:held", "u2:held", "u3:held"}},
		{name: "one seat per user", start: withSeats(opened(3), 1), args: group.SeatArgs{UserID: "u2", OrderID: "o7"}, now: t0, wantErr: group.ErrAlreadyMember, wantSeats: []string{"u1:held", "u2:held"}},
		{name: "deadline passed", start: opened(3), args: u("2"), now: t0.Add(time.Minute), wantErr: group.ErrClosed, wantSeats: []string{"u1:held"}},
		{name: "decided group", start: failed, args: u("2"), now: t0, wantErr: group.ErrClosed, wantSeats: []string{"u1:held"}},
		{name: "not public before the leader's order exists", start: unopened, args: u("2"), now: t0, wantErr: group.ErrNotFound, wantSeats: []string{"u1:reserving"}},
		{name: "no group", args: u("2"), now: t0, wantErr: group.ErrNotFound},
		{
			name: "a stale reservation is freed for a newcomer", start: withSeats(stale, 0), args: u("5"), now: t0.Add(reserve),
			wantSeats: []string{"u1:held", "u5:reserving"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := tt.start
			g.Seats = append([]group.Seat(nil), g.Seats...)
			err := g.Join(tt.args, tt.now, reserve)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			var got []string
			for _, s := range g.Seats {
				got = append(got, s.UserID+":"+string(s.State))
			}
			if diff := cmp.Diff(got, tt.wantSeats); diff != "" {
				t.Errorf("seats mismatch (-got +want):\n%s", diff)
			}
			if len(g.Seats) > max(g.GroupSize, 1) {
				t.Errorf("%d seats in a group of %d", len(g.Seats), g.GroupSize)
			}
		})
	}
}

func TestConfirmAndFailSeat(t *testing.T) {
	t.Parallel()
	t.Run("leader's confirmation opens the group", func(t *testing.T) {
		t.Parallel()
		var g group.Group
		_ = group.Open(&g, group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: 2, ExpiresAt: t0.Add(time.Minute), UserID: "u1", OrderID: "o1"}, t0)
		if err := g.ConfirmSeat(group.SeatArgs{UserID: "u1", OrderID: "o1"}, t0, reserve); err != nil {
			t.Fatal(err)
		}
		if !g.Opened || !g.Visible() || g.Seats[0].State != group.SeatHeld {
			t.Errorf("after confirm: %+v", g)
		}
		if diff := cmp.Diff(types(g), []string{events.TopicGroupOpened}); diff != "" {
			t.Errorf("outbox (-got +want):\n%s", diff)
		}
		if got, want := g.Outbox[0].EventID, "g1:group.opened"; got != want {
			t.Errorf("event id %q, want %q", got, want)
		}
		// A replay announces nothing more.
		if err := g.ConfirmSeat(group.SeatArgs{UserID: "u1", OrderID: "o1"}, t0, reserve); err != nil || len(g.Outbox) != 1 {
			t.Errorf("replay: %v, outbox %v", err, types(g))
		}
	})
	t.Run("member's confirmation announces the join", func(t *testing.T) {
		t.Parallel()
		g := opened(3)
		_ = g.Join(group.SeatArgs{UserID: "u2", OrderID: "o2"}, t0, reserve)
		if err := g.ConfirmSeat(group.SeatArgs{UserID: "u2", OrderID: "o2"}, t0, reserve); err != nil {
			t.Fatal(err)
		}
		if len(g.Outbox) != 1 || g.Outbox[0].Type != events.TopicGroupJoined || g.Outbox[0].EventID != "g1:group.joined:o2" ||
			g.Outbox[0].SeatsTaken != 2 || g.Outbox[0].UserID != "u2" || len(g.Outbox[0].Members) != 2 {
			t.Errorf("outbox %+v", g.Outbox)
		}
	})
	t.Run("a freed seat is taken again when there is room", func(t *testing.T) {
		t.Parallel()
		g := opened(3)
		if err := g.ConfirmSeat(group.SeatArgs{UserID: "u2", OrderID: "o2"}, t0, reserve); err != nil {
			t.Fatal(err)
		}
		if len(g.Seats) != 2 || g.Seats[1].State != group.SeatHeld {
			t.Errorf("seats %+v", g.Seats)
		}
	})
	t.Run("a freed seat cannot come back into a full group", func(t *testing.T) {
		t.Parallel()
		g := withSeats(opened(2), 1)
		if err := g.ConfirmSeat(group.SeatArgs{UserID: "u9", OrderID: "o9"}, t0, reserve); !errors.Is(err, group.ErrFull) {
			t.Errorf("err = %v, want group-full", err)
		}
	})
	t.Run("a failed member's seat is freed", func(t *testing.T) {
		t.Parallel()
		g := opened(3)
		_ = g.Join(group.SeatArgs{UserID: "u2", OrderID: "o2"}, t0, reserve)
		g.FailSeat(group.SeatArgs{UserID: "u2", OrderID: "o2"}, t0)
		if len(g.Seats) != 1 || g.Status != group.StatusOpen {
			t.Errorf("after FailSeat: %+v", g)
		}
	})
	t.Run("a failed leader ends the unopened group unannounced", func(t *testing.T) {
		t.Parallel()
		var g group.Group
		_ = group.Open(&g, group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: 2, ExpiresAt: t0.Add(time.Minute), UserID: "u1", OrderID: "o1"}, t0)
		g.FailSeat(group.SeatArgs{UserID: "u1", OrderID: "o1"}, t0)
		if g.Status != group.StatusFailed || len(g.Seats) != 0 || len(g.Outbox) != 0 || g.Visible() {
			t.Errorf("after the leader failed: %+v", g)
		}
	})
	t.Run("a held seat is not failed", func(t *testing.T) {
		t.Parallel()
		g := opened(3)
		g.FailSeat(group.SeatArgs{UserID: "u1", OrderID: "o1"}, t0)
		if len(g.Seats) != 1 {
			t.Errorf("held seat freed: %+v", g.Seats)
		}
	})
}

func TestMemberPaid(t *testing.T) {
	t.Parallel()
	expires := t0.Add(time.Minute)
	tests := []struct {
		name       string
		start      group.Group
		args       group.PaidArgs
		now        time.Time
		wantStatus group.Status
		wantPaid   int
		wantSeats  int
		wantEvents []string
	}{
		{name: "one of three paid", start: withSeats(opened(3), 2), args: group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: t0}, now: t0,
			wantStatus: group.StatusOpen, wantPaid: 1, wantSeats: 3},
		{name: "last payment succeeds the group", start: paid(withSeats(opened(3), 2), t0, "o1", "o2"), args: group.PaidArgs{OrderID: "o3", UserID: "u3", PaidAt: t0}, now: t0,
			wantStatus: group.StatusSucceeded, wantPaid: 3, wantSeats: 3, wantEvents: []string{events.TopicGroupSucceeded}},
		{name: "redelivered payment changes nothing", start: paid(withSeats(opened(3), 2), t0, "o1", "o2", "o3"), args: group.PaidArgs{OrderID: "o3", UserID: "u3", PaidAt: t0}, now: t0,
			wantStatus: group.StatusOpen, wantPaid: 3, wantSeats: 3},
		{name: "all paid but not all seats taken", start: paid(withSeats(opened(3), 1), t0, "o1"), args: group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: t0}, now: t0,
			wantStatus: group.StatusOpen, wantPaid: 2, wantSeats: 2},
		{name: "payment after the deadline does not count", start: paid(withSeats(opened(2), 1), t0, "o1"), args: group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: expires.Add(time.Millisecond)}, now: expires.Add(time.Second),
			wantStatus: group.StatusOpen, wantPaid: 2, wantSeats: 2},
		{name: "payment at the deadline, reported late, counts", start: paid(withSeats(opened(2), 1), t0, "o1"), args: group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: expires}, now: expires.Add(time.Second),
			wantStatus: group.StatusSucceeded, wantPaid: 2, wantSeats: 2, wantEvents: []string{events.TopicGroupSucceeded}},
		{name: "paid order whose seat was freed takes a free seat", start: paid(opened(2), t0, "o1"), args: group.PaidArgs{OrderID: "o5", UserID: "u5", PaidAt: t0}, now: t0,
			wantStatus: group.StatusSucceeded, wantPaid: 2, wantSeats: 2, wantEvents: []string{events.TopicGroupSucceeded}},
		{name: "paid order without a seat in a full group stays out", start: withSeats(opened(2), 1), args: group.PaidArgs{OrderID: "o5", UserID: "u5", PaidAt: t0}, now: t0,
			wantStatus: group.StatusOpen, wantPaid: 0, wantSeats: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := tt.start
			g.MemberPaid(tt.args, tt.now)
			if g.Status != tt.wantStatus || g.PaidCount() != tt.wantPaid || len(g.Seats) != tt.wantSeats {
				t.Errorf("status %s paid %d seats %d, want %s %d %d", g.Status, g.PaidCount(), len(g.Seats), tt.wantStatus, tt.wantPaid, tt.wantSeats)
			}
			if diff := cmp.Diff(types(g), tt.wantEvents); diff != "" {
				t.Errorf("outbox (-got +want):\n%s", diff)
			}
			if len(g.Outbox) == 1 {
				e := g.Outbox[0]
				if e.EventID != "g1:group.succeeded" || e.Status != "succeeded" || len(e.Members) != len(g.Seats) || e.Paid != tt.wantPaid {
					t.Errorf("event %+v", e)
				}
			}
		})
	}
}

func TestMemberLeft(t *testing.T) {
	t.Parallel()
	g := paid(withSeats(opened(3), 2), t0, "o2")
	g.MemberLeft(group.LeftArgs{OrderID: "o3"})
	g.MemberLeft(group.LeftArgs{OrderID: "o3"}) // redelivered
	g.MemberLeft(group.LeftArgs{OrderID: "o2"}) // paid: stays
	if len(g.Seats) != 2 || g.Seats[1].OrderID != "o2" {
		t.Errorf("seats %+v", g.Seats)
	}
	g.Status = group.StatusFailed
	g.MemberLeft(group.LeftArgs{OrderID: "o1"})
	if len(g.Seats) != 2 {
		t.Errorf("a decided group's seats changed: %+v", g.Seats)
	}
}

func TestDeadline(t *testing.T) {
	t.Parallel()
	expires := t0.Add(time.Minute)
	t.Run("open group fails and is announced with its members", func(t *testing.T) {
		t.Parallel()
		g := paid(withSeats(opened(3), 1), t0, "o1")
		if !g.Deadline(expires.Add(80 * time.Millisecond)) {
			t.Fatal("deadline not handled")
		}
		if g.Status != group.StatusFailed || g.DeadlineFiredAt == nil || !g.DeadlineFiredAt.Equal(expires.Add(80*time.Millisecond)) {
			t.Errorf("after deadline: %+v", g)
		}
		if len(g.Outbox) != 1 || g.Outbox[0].Type != events.TopicGroupFailed || len(g.Outbox[0].Members) != 2 || !g.Outbox[0].Members[0].Paid {
			t.Errorf("outbox %+v", g.Outbox)
		}
		// The second firing records nothing new and announces nothing again.
		g.Outbox = nil
		g.Deadline(expires.Add(time.Minute))
		if len(g.Outbox) != 0 || !g.DeadlineFiredAt.Equal(expires.Add(80*time.Millisecond)) {
			t.Errorf("second firing: %+v", g)
		}
	})
	t.Run("early firing changes nothing", func(t *testing.T) {
		t.Parallel()
		g := opened(3)
		if g.Deadline(expires.Add(-time.Millisecond)) || g.Status != group.StatusOpen || g.DeadlineFiredAt != nil {
			t.Errorf("early firing: %+v", g)
		}
	})
	t.Run("a succeeded group stays succeeded", func(t *testing.T) {
		t.Parallel()
		g := paid(withSeats(opened(2), 1), t0, "o1")
		g.MemberPaid(group.PaidArgs{OrderID: "o2", UserID: "u2", PaidAt: t0}, t0)
		g.Outbox = nil
		g.Deadline(expires)
		if g.Status != group.StatusSucceeded || len(g.Outbox) != 0 || g.DeadlineFiredAt == nil {
			t.Errorf("after deadline: %+v", g)
		}
	})
	t.Run("an unopened group fails announced, for its leader's order", func(t *testing.T) {
		t.Parallel()
		var g group.Group
		_ = group.Open(&g, group.OpenArgs{GroupID: "g1", DealID: "d1", GroupSize: 2, ExpiresAt: expires, UserID: "u1", OrderID: "o1"}, t0)
		g.Deadline(expires)
		if g.Status != group.StatusFailed || len(g.Outbox) != 1 {
			t.Errorf("after deadline: %+v", g)
		}
	})
}

func TestViewOf(t *testing.T) {
	t.Parallel()
	g := paid(withSeats(opened(4), 2), t0, "o1")
	want := group.View{ID: "g1", DealID: "d1", Status: group.StatusOpen, GroupSize: 4, SeatsTaken: 3, Paid: 1, ExpiresAt: t0.Add(time.Minute)}
	if diff := cmp.Diff(group.ViewOf(g), want); diff != "" {
		t.Errorf("view (-got +want):\n%s", diff)
	}
}
