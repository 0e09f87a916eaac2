package deadletter_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func TestFromMessage(t *testing.T) {
	t.Parallel()
	const topic = "order.created.dead"
	tests := []struct {
		name    string
		msg     string
		want    deadletter.Letter
		wantErr error
	}{
		{
			name: "cloud event with JSON data",
			msg:  `{"specversion":"1.0","id":"ce-1","topic":"order.created","data":{"v":99}}`,
			want: deadletter.Letter{Topic: topic, ID: "ce-1", Data: `{"v":99}`, ReceivedAt: t0},
		},
		{
			name: "cloud event with string data",
			msg:  `{"specversion":"1.0","id":"ce-2","data":"hello"}`,
			want: deadletter.Letter{Topic: topic, ID: "ce-2", Data: "hello", ReceivedAt: t0},
		},
		{
			name: "cloud event with binary data",
			msg:  `{"specversion":"1.0","id":"ce-3","data_base64":"AAE="}`,
			want: deadletter.Letter{Topic: topic, ID: "ce-3", Data: "\x00\x01", ReceivedAt: t0},
		},
		{
			name: "cloud event without data",
			msg:  `{"specversion":"1.0","id":"ce-4"}`,
			want: deadletter.Letter{Topic: topic, ID: "ce-4", ReceivedAt: t0},
		},
		{
			name: "not a cloud event is kept whole, named by its hash",
			msg:  `garbage`,
			want: deadletter.Letter{Topic: topic, ID: fmt.Sprintf("sha256:%x", sha256.Sum256([]byte("garbage"))), Data: "garbage", ReceivedAt: t0},
		},
		{name: "topic with a line break", msg: `{}`, wantErr: deadletter.ErrInvalidTopic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			top := topic
			if tt.wantErr != nil {
				top = "x\ny"
			}
			got, err := deadletter.FromMessage(top, []byte(tt.msg), t0)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("letter (-want +got):\n%s", diff)
			}
		})
	}
}

func TestListAddDedupesAndCaps(t *testing.T) {
	t.Parallel()
	var ls deadletter.List
	for i := range deadletter.MaxItems + 3 {
		if !ls.Add(deadletter.Letter{ID: fmt.Sprint(i)}) {
			t.Fatalf("Add(%d) = false, want true", i)
		}
	}
	if ls.Add(deadletter.Letter{ID: fmt.Sprint(deadletter.MaxItems + 2)}) {
		t.Error("Add(duplicate) = true, want false")
	}
	if got := len(ls.Items); got != deadletter.MaxItems {
		t.Fatalf("len = %d, want %d", got, deadletter.MaxItems)
	}
	if got, want := ls.Items[0].ID, fmt.Sprint(deadletter.MaxItems+2); got != want {
		t.Errorf("newest = %s, want %s", got, want)
	}
	if got, want := ls.Items[deadletter.MaxItems-1].ID, "3"; got != want {
		t.Errorf("oldest = %s, want %s", got, want)
	}
}

type memStore struct {
	lists map[string]*deadletter.List
	err   error
}

func (m *memStore) Add(_ context.Context, l deadletter.Letter) (bool, error) {
	if m.err != nil {
		return false, m.err
	}
	ls := m.lists[l.Topic]
	if ls == nil {
		ls = &deadletter.List{}
		m.lists[l.Topic] = ls
	}
	return ls.Add(l), nil
}

func (m *memStore) List(_ context.Context, topic string) ([]deadletter.Letter, error) {
	if m.err != nil {
		return nil, m.err
	}
	if ls := m.lists[topic]; ls != nil {
		return ls.Items, nil
	}
	return nil, nil
}

func TestKeeper(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st := &memStore{lists: map[string]*deadletter.List{}}
	k := deadletter.NewKeeper(st, func() time.Time { return t0 })
	msg := []byte(`{"specversion":"1.0","id":"ce-1","data":{"v":99}}`)
	for i, want := range []bool{true, false} {
		if _, added, err := k.Keep(ctx, "order.created.dead", msg); err != nil || added != want {
			t.Errorf("Keep #%d = %v, %v; want %v, nil", i, added, err, want)
		}
	}
	got, err := k.List(ctx, "order.created.dead")
	if err != nil {
		t.Fatal(err)
	}
	want := []deadletter.Letter{{Topic: "order.created.dead", ID: "ce-1", Data: `{"v":99}`, ReceivedAt: t0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
	if got, err := k.List(ctx, "group.failed.dead"); err != nil || got == nil || len(got) != 0 {
		t.Errorf("List(empty topic) = %#v, %v; want an empty, non-nil list", got, err)
	}
	st.err = errors.New("state store down")
	if _, _, err := k.Keep(ctx, "order.created.dead", msg); err == nil {
		t.Error("Keep during an outage: want an error")
	}
}
