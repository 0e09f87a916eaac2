package live_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/live"
)

func TestDecodeEvent(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		in      string
		want    live.EventV1
		wantErr bool
	}{
		{
			name: "order event, data compacted",
			in:   `{"v":1,"id":"o1:order.paid","type":"order.paid","created_at":"2025-06-01T12:00:00Z","data":{ "order_id": "o1" },"users":["u1"]}`,
			want: live.EventV1{V: 1, ID: "o1:order.paid", Type: "order.paid", CreatedAt: at, Data: json.RawMessage(`{"order_id":"o1"}`), Users: []string{"u1"}},
		},
		{
			name: "group event without recipients",
			in:   `{"v":1,"id":"g1:group.opened","type":"group.opened","created_at":"2025-06-01T12:00:00Z","data":{},"users":[],"group_id":"g1"}`,
			want: live.EventV1{V: 1, ID: "g1:group.opened", Type: "group.opened", CreatedAt: at, Data: json.RawMessage(`{}`), Users: []string{}, GroupID: "g1"},
		},
		{name: "not json", in: `nope`, wantErr: true},
		{name: "unknown version", in: `{"v":2,"id":"x","type":"t","data":{},"users":["u"]}`, wantErr: true},
		{name: "a durable event is not a relay event", in: `{"v":1,"event_id":"o1:order.paid","type":"order.paid","user_id":"u1"}`, wantErr: true},
		{name: "no data", in: `{"v":1,"id":"x","type":"t","users":["u"]}`, wantErr: true},
		{name: "null data", in: `{"v":1,"id":"x","type":"t","data":null,"users":["u"]}`, wantErr: true},
		{name: "line break in id", in: `{"v":1,"id":"x\n","type":"t","data":{},"users":["u"]}`, wantErr: true},
		{name: "empty user", in: `{"v":1,"id":"x","type":"t","data":{},"users":[""]}`, wantErr: true},
		{name: "control character in group", in: `{"v":1,"id":"x","type":"t","data":{},"users":[],"group_id":"g\u0000"}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := live.DecodeEvent([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, live.ErrInvalidEvent) {
					t.Errorf("err = %v, want ErrInvalidEvent", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFanout(t *testing.T) {
	t.Parallel()
	ev := live.EventV1{V: 1, ID: "g1:group.joined", Type: "group.joined", Data: []byte(`{}`), Users: []string{"u1", "u2", "u1"}, GroupID: "g1"}
	tests := []struct {
		name      string
		withGroup bool
		want      map[string][]string // topic -> ids received
	}{
		{name: "group event: members and the group's public stream", withGroup: true,
			want: map[string][]string{live.UserTopic("u1"): {"g1:group.joined"}, live.UserTopic("u2"): {"g1:group.joined"}, live.GroupTopic("g1"): {"g1:group.joined"}, live.UserTopic("u3"): nil}},
		{name: "without group: users only", withGroup: false,
			want: map[string][]string{live.UserTopic("u1"): {"g1:group.joined"}, live.UserTopic("u2"): {"g1:group.joined"}, live.GroupTopic("g1"): nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := live.NewHub(8)
			subs := map[string]*live.Subscription{}
			for topic := range tt.want {
				subs[topic] = h.Subscribe(topic)
			}
			if d := live.Fanout(h, ev, tt.withGroup); d != 0 {
				t.Errorf("dropped = %d, want 0", d)
			}
			got := map[string][]string{}
			for topic, s := range subs {
				ids, _ := drain(s)
				got[topic] = ids
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("received (-want +got):\n%s", diff)
			}
		})
	}
}
