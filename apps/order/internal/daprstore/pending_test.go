package daprstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

// pendingAt is a pending set over a fresh fake store whose clock the test moves.
func pendingAt(cfg daprstore.PendingConfig) (*daprstatetest.Client, *daprstore.Pending, *ordertest.Clock) {
	f, s := newState()
	clock := ordertest.NewClock(t0)
	cfg.Now = clock.Now
	return f, daprstore.NewPending(s, cfg), clock
}

func TestPendingContract(t *testing.T) {
	t.Parallel()
	ordertest.PendingContract(t, func(*testing.T) (order.Pending, time.Time) {
		_, p, _ := pendingAt(daprstore.PendingConfig{Shards: 4, Window: 2 * time.Second})
		return p, t0
	})
}

func pe(id string, due time.Time) order.PendingEntry {
	return order.PendingEntry{OrderID: id, UserID: "u1", DealID: "d1", Due: due}
}

// Each document holds only the orders due in its window, on its shard: its size is bounded
// by the registrations of one window, whatever the number of pending orders.
func TestPendingDocumentsHoldOneWindow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, p, _ := pendingAt(daprstore.PendingConfig{Shards: 2, Window: 10 * time.Second})
	for i := range 60 {
		if err := p.Add(ctx, pe(fmt.Sprintf("o%d", i), t0.Add(time.Minute+time.Duration(i)*time.Second))); err != nil {
			t.Fatal(err)
		}
	}
	keys := f.Keys(component, "pendingwin:")
	if len(keys) != 12 {
		t.Errorf("window documents = %v, want 6 windows × 2 shards", keys)
	}
	base := t0.Add(time.Minute).Unix()
	for _, k := range keys {
		var start int64
		var shard int
		if _, err := fmt.Sscanf(k, "pendingwin:%d:%d", &start, &shard); err != nil {
			t.Fatalf("key %q: %v", k, err)
		}
		raw, _ := f.Value(component, k)
		var d struct {
			Orders map[string]struct {
				Due time.Time `json:"due"`
			} `json:"orders"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatal(err)
		}
		if (start-base)%10 != 0 || len(d.Orders) == 0 || len(d.Orders) > 10 {
			t.Errorf("%s holds %d orders, want 1-10 of a 10s window", k, len(d.Orders))
		}
		for id, it := range d.Orders {
			if it.Due.Unix() < start || it.Due.Unix() >= start+10 {
				t.Errorf("%s holds %s due %v, outside its window", k, id, it.Due)
			}
		}
	}
	raw, _ := f.Value(component, "pendingwins")
	var dir struct{ Windows []int64 }
	if err := json.Unmarshal(raw, &dir); err != nil {
		t.Fatal(err)
	}
	if want := []int64{base, base + 10, base + 20, base + 30, base + 40, base + 50}; !cmp.Equal(dir.Windows, want) {
		t.Errorf("directory = %v, want %v", dir.Windows, want)
	}
}

// Adds that arrive while a write of their document is in flight share the next write: two
// writes for eleven registrations.
func TestPendingGroupCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, p, _ := pendingAt(daprstore.PendingConfig{Shards: 1, Window: 10 * time.Second})
	due := t0.Add(time.Minute)
	if err := p.Add(ctx, pe("warm", due)); err != nil { // lists the window
		t.Fatal(err)
	}
	hold := make(chan struct{})
	var held atomic.Bool
	entered := make(chan struct{})
	f.BeforeSave = func(_ context.Context, key string) {
		if strings.HasPrefix(key, "pendingwin:") && held.CompareAndSwap(false, true) {
			close(entered)
			<-hold
		}
	}
	before := len(f.Writes(component, "pendingwin:"))
	var wg sync.WaitGroup
	errs := make([]error, 11)
	wg.Go(func() { errs[0] = p.Add(ctx, pe("first", due)) })
	<-entered
	for i := 1; i <= 10; i++ {
		wg.Go(func() { errs[i] = p.Add(ctx, pe(fmt.Sprintf("o%d", i), due)) })
	}
	waitUntil(t, func() bool { return p.QueuedFor("o1", due) == 10 })
	close(hold)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Add #%d = %v", i, err)
		}
	}
	if got := len(f.Writes(component, "pendingwin:")) - before; got != 2 {
		t.Errorf("writes = %d, want 2 (the held one, then one for the ten queued)", got)
	}
	got, err := p.Due(ctx, due.Add(time.Second))
	if err != nil || len(got) != 12 {
		t.Errorf("Due = %d entries, %v; want 12", len(got), err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// A write that loses its CAS to another replica is re-applied to a fresh read: neither
// replica's entries are lost.
func TestPendingConflictRetried(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, p, _ := pendingAt(daprstore.PendingConfig{Shards: 1, Window: 10 * time.Second})
	due := t0.Add(time.Minute)
	if err := p.Add(ctx, pe("o1", due)); err != nil {
		t.Fatal(err)
	}
	f.Interfere("pendingwin:", 3, func(_ string, cur []byte) []byte {
		var d map[string]map[string]any
		_ = json.Unmarshal(cur, &d)
		d["orders"][fmt.Sprintf("rival%d", len(d["orders"]))] = map[string]any{"user_id": "u2", "deal_id": "d1", "due": due}
		b, _ := json.Marshal(d)
		return b
	})
	if err := p.Add(ctx, pe("o2", due)); err != nil {
		t.Fatalf("Add under conflicts = %v", err)
	}
	got, err := p.Due(ctx, due.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range got {
		ids = append(ids, e.OrderID)
	}
	if want := []string{"o1", "o2", "rival1", "rival2", "rival3"}; !cmp.Equal(ids, want) {
		t.Errorf("entries = %v, want %v", ids, want)
	}
}

// The sweep reads only the windows that are due; an emptied window is dropped once it ended
// Lag ago, documents and directory entry.
func TestPendingWindowSelectionAndDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, p, clock := pendingAt(daprstore.PendingConfig{Shards: 2, Window: 10 * time.Second, Lag: time.Minute})
	f.Put(component, "pendingwins", []byte(`{"legacy_drained":true}`))
	early, late := pe("early", t0.Add(time.Minute)), pe("late", t0.Add(5*time.Minute))
	for _, e := range []order.PendingEntry{early, late} {
		if err := p.Add(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	start := func(e order.PendingEntry) string { return fmt.Sprint(e.Due.Unix() - e.Due.Unix()%10) }

	for _, tt := range []struct {
		at   time.Time
		want []string
	}{
		{t0.Add(time.Minute), nil},
		{t0.Add(time.Minute + time.Second), []string{start(early)}},
		{t0.Add(10 * time.Minute), []string{start(early), start(late)}},
	} {
		got, err := p.Windows(ctx, tt.at)
		if err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(got, tt.want) {
			t.Errorf("Windows(T0+%v) = %v, want %v", tt.at.Sub(t0), got, tt.want)
		}
	}

	at := t0.Add(time.Minute + time.Second)
	clock.Set(at)
	c, ok, err := p.Claim(ctx, start(early), at)
	if err != nil || !ok || len(c.Entries) != 1 {
		t.Fatalf("Claim = %+v, %t, %v; want the early entry", c, ok, err)
	}
	if err := p.Remove(ctx, c.Entries[0]); err != nil {
		t.Fatal(err)
	}
	if err := p.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	// Empty, but ended less than Lag ago: kept.
	if c, ok, err := p.Claim(ctx, start(early), at); err != nil || !ok || len(c.Entries) != 0 {
		t.Fatalf("Claim of the emptied window = %+v, %t, %v", c, ok, err)
	} else if err := p.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.Windows(ctx, at); len(got) != 1 {
		t.Errorf("Windows before the lag = %v, want the emptied window still listed", got)
	}
	at = t0.Add(3 * time.Minute)
	clock.Set(at)
	if _, ok, err := p.Claim(ctx, start(early), at); err != nil || !ok {
		t.Fatalf("Claim after the lag = %t, %v", ok, err)
	}
	if got, _ := p.Windows(ctx, t0.Add(time.Hour)); !cmp.Equal(got, []string{start(late)}) {
		t.Errorf("Windows after the drop = %v, want only %s", got, start(late))
	}
	for _, k := range f.Keys(component, "pendingwin:") {
		if strings.HasPrefix(k, "pendingwin:"+start(early)+":") {
			t.Errorf("dropped window's document %s is still stored", k)
		}
	}
}

// A lease ends by itself: a runner that died holding a window leaves it to the next claim
// after Lease.
func TestPendingLeaseExpires(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, p, clock := pendingAt(daprstore.PendingConfig{Shards: 1, Window: 10 * time.Second, Lease: 30 * time.Second})
	if err := p.Add(ctx, pe("o1", t0.Add(time.Minute))); err != nil {
		t.Fatal(err)
	}
	at := t0.Add(2 * time.Minute)
	ws, err := p.Windows(ctx, at)
	if err != nil || len(ws) != 2 { // the legacy shards, then the window
		t.Fatalf("Windows = %v, %v", ws, err)
	}
	w := ws[1]
	clock.Set(at)
	first, ok, err := p.Claim(ctx, w, at)
	if err != nil || !ok {
		t.Fatalf("Claim = %t, %v", ok, err)
	}
	clock.Advance(29 * time.Second)
	if _, ok, _ := p.Claim(ctx, w, at); ok {
		t.Error("Claim within the lease succeeded")
	}
	clock.Advance(2 * time.Second)
	second, ok, err := p.Claim(ctx, w, at)
	if err != nil || !ok || len(second.Entries) != 1 {
		t.Fatalf("Claim after the lease = %+v, %t, %v; want it with o1", second, ok, err)
	}
	if err := p.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := p.Claim(ctx, w, at); ok {
		t.Error("the expired claim's Release ended the new lease")
	}
}

// The shards of earlier versions (pending:<n>) are swept as one more window until they are
// empty; removals reach them meanwhile, and once drained they are never read again.
func TestPendingLegacyShardsDrain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, p, _ := pendingAt(daprstore.PendingConfig{Shards: 4, Window: 10 * time.Second})
	due := t0.Add(-time.Hour)
	// Where the earlier version put o1 and o2 (fnv32a of the id modulo 4, as today's shards).
	for _, id := range []string{"o1", "o2"} {
		doc := fmt.Sprintf(`{"orders":{%q:{"user_id":"u1","deal_id":"d1","due":%q}}}`, id, due.Format(time.RFC3339))
		f.Put(component, p.LegacyKey(id), []byte(doc))
	}
	ws, err := p.Windows(ctx, t0)
	if err != nil || !cmp.Equal(ws, []string{"legacy"}) {
		t.Fatalf("Windows = %v, %v; want the legacy shards", ws, err)
	}
	c, ok, err := p.Claim(ctx, "legacy", t0)
	if err != nil || !ok || len(c.Entries) != 2 {
		t.Fatalf("Claim(legacy) = %+v, %t, %v; want o1 and o2", c, ok, err)
	}
	if err := p.Remove(ctx, c.Entries[0]); err != nil { // by the key the claim returned
		t.Fatal(err)
	}
	if err := p.Remove(ctx, pe("o2", due)); err != nil { // by due time, as settle does
		t.Fatal(err)
	}
	if err := p.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c, ok, err := p.Claim(ctx, "legacy", t0); err != nil || !ok || len(c.Entries) != 0 {
		t.Fatalf("Claim(legacy) once empty = %+v, %t, %v", c, ok, err)
	}
	if ws, err := p.Windows(ctx, t0); err != nil || len(ws) != 0 {
		t.Errorf("Windows after the drain = %v, %v; want none", ws, err)
	}
	reads := 0
	f.AfterGet = func(_ context.Context, key string) {
		if slices.Contains([]string{"pending:0", "pending:1", "pending:2", "pending:3"}, key) {
			reads++
		}
	}
	if _, err := p.Due(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := p.Remove(ctx, pe("o3", t0)); err != nil {
		t.Fatal(err)
	}
	if reads != 0 {
		t.Errorf("%d reads of legacy shards after the drain, want 0", reads)
	}
}
