package daprstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/groupbuy/groupbuy/apps/notify/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// fakeClient is an in-memory daprstate.Client with the Redis state store's behaviour that
// daprstate relies on: version ETags, checked on first-write writes (mismatch = gRPC Aborted),
// a first-write without ETag failing on an existing key, a missing key read as an empty item.
// beforeSave runs before each write, so a test can slip a competing write in between.
type fakeClient struct {
	mu         sync.Mutex
	items      map[string]fakeItem
	saveErr    error
	beforeSave func(key string)
}

type fakeItem struct {
	value   []byte
	version int
}

var _ daprstate.Client = (*fakeClient)(nil)

func newFake() *fakeClient { return &fakeClient{items: map[string]fakeItem{}} }

func (f *fakeClient) GetState(_ context.Context, _, key string, _ map[string]string) (*dapr.StateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[key]
	if !ok {
		return &dapr.StateItem{Key: key}, nil
	}
	return &dapr.StateItem{Key: key, Value: append([]byte(nil), it.value...), Etag: strconv.Itoa(it.version)}, nil
}

func (f *fakeClient) SaveStateWithETag(_ context.Context, _, key string, data []byte, etag string, _ map[string]string, so ...dapr.StateOption) error {
	if f.beforeSave != nil {
		f.beforeSave(key)
	}
	var opts dapr.StateOptions
	for _, o := range so {
		o(&opts)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.saveErr != nil {
		return f.saveErr
	}
	cur, exists := f.items[key]
	if opts.Concurrency == dapr.StateConcurrencyFirstWrite {
		switch {
		case etag != "" && (!exists || strconv.Itoa(cur.version) != etag):
			return status.Error(codes.Aborted, "possible etag mismatch")
		case etag == "" && exists:
			return errors.New("failed to set key")
		}
	}
	f.items[key] = fakeItem{value: append([]byte(nil), data...), version: cur.version + 1}
	return nil
}

func (f *fakeClient) DeleteStateWithETag(_ context.Context, _, key string, _ *dapr.ETag, _ map[string]string, _ *dapr.StateOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.items, key)
	return nil
}

func (f *fakeClient) stored(t *testing.T, key string) notification.Inbox {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	var in notification.Inbox
	if err := json.Unmarshal(f.items[key].value, &in); err != nil {
		t.Fatalf("stored %s: %v", key, err)
	}
	return in
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func note(id string, at time.Time) notification.Notification {
	return notification.Notification{ID: id, Type: "order.created", CreatedAt: at, Data: json.RawMessage(`{"order_id":"x"}`)}
}

func TestAddDedupes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := newFake()
	s := daprstore.New(daprstate.New(fake, "statestore"))

	for i, want := range []bool{true, false, false} {
		got, err := s.Add(ctx, "u1", note("o1:order.created", t0))
		if err != nil {
			t.Fatalf("Add #%d: %v", i, err)
		}
		if got != want {
			t.Errorf("Add #%d = %v, want %v", i, got, want)
		}
	}
	if got := len(fake.stored(t, daprstore.Key("u1")).Items); got != 1 {
		t.Errorf("stored items = %d, want 1", got)
	}
	items, err := s.Inbox(ctx, "u1")
	if err != nil || len(items) != 1 || items[0].ID != "o1:order.created" {
		t.Errorf("Inbox = %+v, %v", items, err)
	}
	if items, err := s.Inbox(ctx, "nobody"); err != nil || len(items) != 0 {
		t.Errorf("Inbox(nobody) = %+v, %v; want empty", items, err)
	}
}

func TestAddCaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fake := newFake()
	s := daprstore.New(daprstate.New(fake, "statestore"))
	for i := range notification.MaxItems + 10 {
		if _, err := s.Add(ctx, "u1", note(fmt.Sprintf("o%d:order.created", i), t0.Add(time.Duration(i)*time.Second))); err != nil {
			t.Fatalf("Add %d: %v", i, err)
		}
	}
	in := fake.stored(t, daprstore.Key("u1"))
	if got := len(in.Items); got != notification.MaxItems {
		t.Fatalf("stored items = %d, want %d", got, notification.MaxItems)
	}
	if got, want := in.Items[0].ID, fmt.Sprintf("o%d:order.created", notification.MaxItems+9); got != want {
		t.Errorf("newest = %s, want %s", got, want)
	}
}

// Two replicas adding to the same inbox at once: the ETag makes the loser re-read and re-apply,
// so both entries survive.
func TestAddUnderContention(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fake := newFake()
	s := daprstore.New(daprstate.New(fake, "statestore"))
	if _, err := s.Add(ctx, "u1", note("first", t0)); err != nil {
		t.Fatal(err)
	}
	other := daprstore.New(daprstate.New(fake, "statestore"))
	var fired atomic.Bool
	fake.beforeSave = func(string) {
		if fired.CompareAndSwap(false, true) {
			// Runs inside the first save attempt, after its read: a competing write.
			if _, err := other.Add(ctx, "u1", note("competitor", t0.Add(time.Second))); err != nil {
				t.Errorf("competing Add: %v", err)
			}
		}
	}
	if added, err := s.Add(ctx, "u1", note("mine", t0.Add(2*time.Second))); err != nil || !added {
		t.Fatalf("Add = %v, %v; want true, nil", added, err)
	}
	got := fake.stored(t, daprstore.Key("u1"))
	var gotIDs []string
	for _, n := range got.Items {
		gotIDs = append(gotIDs, n.ID)
	}
	want := []string{"mine", "competitor", "first"}
	if fmt.Sprint(gotIDs) != fmt.Sprint(want) {
		t.Errorf("ids = %v, want %v", gotIDs, want)
	}
}

func TestAddReportsOutage(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.saveErr = status.Error(codes.Unavailable, "connection refused")
	s := daprstore.New(daprstate.New(fake, "statestore"))
	if _, err := s.Add(context.Background(), "u1", note("a", t0)); err == nil {
		t.Fatal("Add during an outage: want an error")
	}
}
