package live_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/live"
)

func msg(id string) live.Message { return live.Message{ID: id, Type: "order.paid", Data: []byte(`{}`)} }

// drain reads what is buffered without waiting and reports whether the channel was closed.
func drain(s *live.Subscription) (ids []string, closed bool) {
	for {
		select {
		case m, ok := <-s.C():
			if !ok {
				return ids, true
			}
			ids = append(ids, m.ID)
		default:
			return ids, false
		}
	}
}

func TestFanOut(t *testing.T) {
	t.Parallel()
	h := live.NewHub(8)
	a1 := h.Subscribe(live.UserTopic("a"))
	a2 := h.Subscribe(live.UserTopic("a"))
	b := h.Subscribe(live.UserTopic("b"))
	g := h.Subscribe(live.GroupTopic("a")) // same id, other namespace

	delivered, dropped := h.Publish(live.UserTopic("a"), msg("1"))
	if delivered != 2 || dropped != 0 {
		t.Errorf("Publish = %d delivered, %d dropped; want 2, 0", delivered, dropped)
	}
	h.Publish(live.UserTopic("a"), msg("2"))

	tests := []struct {
		name string
		sub  *live.Subscription
		want []string
	}{
		{name: "first client of a", sub: a1, want: []string{"1", "2"}},
		{name: "second client of a", sub: a2, want: []string{"1", "2"}},
		{name: "client of b", sub: b, want: nil},
		{name: "group a", sub: g, want: nil},
	}
	for _, tt := range tests {
		got, closed := drain(tt.sub)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
		if closed {
			t.Errorf("%s: channel closed", tt.name)
		}
	}
}

func TestSlowClientIsDropped(t *testing.T) {
	t.Parallel()
	h := live.NewHub(2)
	slow := h.Subscribe(live.GroupTopic("g"))
	fast := h.Subscribe(live.GroupTopic("g"))

	done := make(chan struct{})
	var dropped int
	go func() {
		defer close(done)
		for i := range 5 {
			_, d := h.Publish(live.GroupTopic("g"), msg(string(rune('a'+i))))
			dropped += d
			// The fast client keeps up.
			<-fast.C()
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Publish blocked on a slow client")
	}
	if dropped != 1 {
		t.Errorf("dropped = %d, want 1", dropped)
	}
	// The slow client keeps what was buffered, then sees its channel closed.
	got, closed := drain(slow)
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Errorf("slow client got (-want +got):\n%s", diff)
	}
	if !closed {
		t.Error("slow client's channel is open, want closed")
	}
	if got := h.Clients(live.GroupTopic("g")); got != 1 {
		t.Errorf("clients = %d, want 1", got)
	}
	slow.Close() // after a drop: no double close
	fast.Close()
	fast.Close()
	if got := h.Clients(live.GroupTopic("g")); got != 0 {
		t.Errorf("clients after Close = %d, want 0", got)
	}
}

func TestCloseEndsEveryStream(t *testing.T) {
	t.Parallel()
	h := live.NewHub(1)
	s := h.Subscribe(live.UserTopic("u"))
	h.Close()
	if _, closed := drain(s); !closed {
		t.Error("subscription open after hub Close")
	}
	late := h.Subscribe(live.UserTopic("u"))
	if _, closed := drain(late); !closed {
		t.Error("subscription on a closed hub is open")
	}
	if d, _ := h.Publish(live.UserTopic("u"), msg("x")); d != 0 {
		t.Errorf("delivered after Close = %d, want 0", d)
	}
	s.Close()
}
