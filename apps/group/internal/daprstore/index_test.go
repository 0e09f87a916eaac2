package daprstore_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/group/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/ids"
)

const (
	retention = time.Hour
	margin    = 10 * time.Minute
)

// newIndex is an index over a fresh fake store whose clock stands at at.
func newIndex(shards int) (*daprstatetest.Client, *daprstore.Index) {
	fc := daprstatetest.NewClient()
	x := daprstore.NewIndex(daprstate.New(fc, storeName), daprstore.IndexConfig{
		Shards: shards, Retention: retention, PruneMargin: margin, Now: func() time.Time { return at },
	})
	return fc, x
}

// shardOf is the shard the index must put groupID in: FNV-32a of the id mod shards. It is
// the stored layout, so the test spells it out rather than asking the index.
func shardOf(groupID string, shards int) int {
	h := fnv.New32a()
	h.Write([]byte(groupID))
	return int(h.Sum32() % uint32(shards))
}

func entry(id string, expiresAt time.Time) group.IndexEntry {
	return group.IndexEntry{GroupID: id, ExpiresAt: expiresAt}
}

func sortEntries(es []group.IndexEntry) []group.IndexEntry {
	es = slices.Clone(es)
	slices.SortFunc(es, func(a, b group.IndexEntry) int { return cmp.Compare(a.GroupID, b.GroupID) })
	return es
}

// stored decodes the document at key; nil when it does not exist.
func stored(t *testing.T, fc *daprstatetest.Client, key string) []group.IndexEntry {
	t.Helper()
	raw, ok := fc.Value(storeName, key)
	if !ok {
		return nil
	}
	var d struct {
		Groups []group.IndexEntry `json:"groups"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("decode %s: %v", key, err)
	}
	return d.Groups
}

func putIndexDoc(t *testing.T, fc *daprstatetest.Client, key string, es ...group.IndexEntry) {
	t.Helper()
	raw, err := json.Marshal(map[string]any{"groups": es})
	if err != nil {
		t.Fatal(err)
	}
	fc.Put(storeName, key, raw)
}

// writesOf counts the successful writes of exactly key.
func writesOf(fc *daprstatetest.Client, key string) int {
	n := 0
	for _, w := range fc.Writes(storeName, key) {
		if w.Key == key {
			n++
		}
	}
	return n
}

func TestIndexRoundTripAcrossShards(t *testing.T) {
	t.Parallel()
	const shards = 4
	fc, x := newIndex(shards)
	ctx := testContext(t)
	var want []group.IndexEntry
	for i := range 40 {
		e := entry(fmt.Sprintf("g%d", i), at.Add(time.Duration(i)*time.Minute))
		if err := x.Add(ctx, "d1", e.GroupID, e.ExpiresAt); err != nil {
			t.Fatalf("Add(%s): %v", e.GroupID, err)
		}
		want = append(want, e)
	}
	if err := x.Add(ctx, "d2", "other", at); err != nil {
		t.Fatalf("Add to another deal: %v", err)
	}

	wantKeys := []string{"dealgroups:d1:0", "dealgroups:d1:1", "dealgroups:d1:2", "dealgroups:d1:3"}
	if diff := gocmp.Diff(fc.Keys(storeName, "dealgroups:d1"), wantKeys); diff != "" {
		t.Errorf("documents (-got +want):\n%s", diff)
	}
	for _, e := range want {
		key := fmt.Sprintf("dealgroups:d1:%d", shardOf(e.GroupID, shards))
		if !slices.Contains(stored(t, fc, key), e) {
			t.Errorf("%s is not in %s", e.GroupID, key)
		}
	}
	got, err := x.List(ctx, "d1")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := gocmp.Diff(sortEntries(got), sortEntries(want)); diff != "" {
		t.Errorf("List (-got +want):\n%s", diff)
	}

	var removed []string
	for _, e := range want[:30] {
		removed = append(removed, e.GroupID)
	}
	if err := x.Remove(ctx, "d1", removed); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	got, err = x.List(ctx, "d1")
	if err != nil {
		t.Fatalf("List after Remove: %v", err)
	}
	if diff := gocmp.Diff(sortEntries(got), sortEntries(want[30:])); diff != "" {
		t.Errorf("List after Remove (-got +want):\n%s", diff)
	}

	removed = removed[:0]
	for _, e := range want[30:] {
		removed = append(removed, e.GroupID)
	}
	if err := x.Remove(ctx, "d1", removed); err != nil {
		t.Fatalf("Remove the rest: %v", err)
	}
	if got := fc.Keys(storeName, "dealgroups:d1"); len(got) != 0 {
		t.Errorf("documents left after removing every group = %v, want none (an empty shard is deleted)", got)
	}
	if got, err := x.List(ctx, "d2"); err != nil || len(got) != 1 {
		t.Errorf("List(d2) = %v, %v; want its one group", got, err)
	}
}

func TestIndexAddIsIdempotent(t *testing.T) {
	t.Parallel()
	fc, x := newIndex(16)
	ctx := testContext(t)
	key := fmt.Sprintf("dealgroups:d1:%d", shardOf("g1", 16))

	for i := range 3 {
		if err := x.Add(ctx, "d1", "g1", at.Add(time.Hour)); err != nil {
			t.Fatalf("Add #%d: %v", i, err)
		}
	}

	if got, want := writesOf(fc, key), 1; got != want {
		t.Errorf("writes of %s = %d, want %d: adding a listed group writes nothing", key, got, want)
	}
	got, err := x.List(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(got, []group.IndexEntry{entry("g1", at.Add(time.Hour))}); diff != "" {
		t.Errorf("List (-got +want):\n%s", diff)
	}
}

// Many groups opened at once on one deal are all listed, and share writes.
func TestIndexConcurrentAdds(t *testing.T) {
	t.Parallel()
	const adds, workers = 2000, 64
	fc, x := newIndex(16)
	ctx := testContext(t)
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= adds {
					return
				}
				if err := x.Add(ctx, "d1", fmt.Sprintf("g%d", i), at.Add(time.Hour)); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Add: %v", err)
	}

	got, err := x.List(ctx, "d1")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if len(got) != adds {
		t.Errorf("List = %d groups, want %d", len(got), adds)
	}
	seen := map[string]bool{}
	for _, e := range got {
		seen[e.GroupID] = true
	}
	for i := range adds {
		if id := fmt.Sprintf("g%d", i); !seen[id] {
			t.Errorf("%s is not listed", id)
		}
	}
	writes := len(fc.Writes(storeName, "dealgroups:"))
	t.Logf("%d adds from %d goroutines: %d writes, %d write calls", adds, workers, writes, fc.SaveCalls())
	// About four adders wait on each shard at a time (each waits for its answer before its
	// next add), so a write carries two to four adds: ~880 writes in practice, 500 at best.
	if writes > adds/2 {
		t.Errorf("writes = %d for %d adds, want at most %d: concurrent adds share writes", writes, adds, adds/2)
	}
}

// Adds that arrive while a write of their shard is in flight share the next write: two
// writes for eleven adds.
func TestIndexGroupCommit(t *testing.T) {
	t.Parallel()
	fc, x := newIndex(1)
	ctx := testContext(t)
	hold := make(chan struct{})
	entered := make(chan struct{})
	var held atomic.Bool
	fc.BeforeSave = func(context.Context, string) {
		if held.CompareAndSwap(false, true) {
			close(entered)
			<-hold
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, 11)
	wg.Go(func() { errs[0] = x.Add(ctx, "d1", "first", at.Add(time.Hour)) })
	<-entered
	for i := 1; i <= 10; i++ {
		wg.Go(func() { errs[i] = x.Add(ctx, "d1", fmt.Sprintf("g%d", i), at.Add(time.Hour)) })
	}
	waitUntil(t, func() bool { return x.Queued("d1", "g1") == 10 })
	close(hold)
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("Add #%d: %v", i, err)
		}
	}
	if got, want := writesOf(fc, "dealgroups:d1:0"), 2; got != want {
		t.Errorf("writes = %d, want %d (the held one, then one for the ten queued)", got, want)
	}
	if got := stored(t, fc, "dealgroups:d1:0"); len(got) != 11 {
		t.Errorf("stored %d groups, want 11", len(got))
	}
}

// A write drops the entries whose deadline is more than retention+margin ago; a document
// that is not written keeps them.
func TestIndexPrunesOnWrite(t *testing.T) {
	t.Parallel()
	const key = "dealgroups:d1:0"
	cutoff := at.Add(-(retention + margin))
	past := entry("past", cutoff.Add(-time.Millisecond))
	edge := entry("edge", cutoff)
	decided := entry("decided", at.Add(-time.Minute))
	open := entry("open", at.Add(time.Hour))
	tests := []struct {
		name      string
		call      func(ctx context.Context, x *daprstore.Index) error
		want      []group.IndexEntry // nil: the document is gone
		wantWrite bool
	}{
		{
			name:      "an add",
			call:      func(ctx context.Context, x *daprstore.Index) error { return x.Add(ctx, "d1", "new", at.Add(time.Hour)) },
			want:      []group.IndexEntry{edge, decided, open, entry("new", at.Add(time.Hour))},
			wantWrite: true,
		},
		{
			name:      "a removal",
			call:      func(ctx context.Context, x *daprstore.Index) error { return x.Remove(ctx, "d1", []string{"decided"}) },
			want:      []group.IndexEntry{edge, open},
			wantWrite: true,
		},
		{
			name: "the removal of the last live group deletes the document",
			call: func(ctx context.Context, x *daprstore.Index) error {
				return x.Remove(ctx, "d1", []string{"edge", "decided", "open"})
			},
			wantWrite: true,
		},
		{
			name: "an add of a listed group writes nothing",
			call: func(ctx context.Context, x *daprstore.Index) error { return x.Add(ctx, "d1", "open", open.ExpiresAt) },
			want: []group.IndexEntry{past, edge, decided, open},
		},
		{
			name: "an add past the retention is dropped at once",
			call: func(ctx context.Context, x *daprstore.Index) error { return x.Add(ctx, "d1", "late", past.ExpiresAt) },
			want: []group.IndexEntry{past, edge, decided, open},
		},
		{
			name: "a removal of an unlisted group writes nothing",
			call: func(ctx context.Context, x *daprstore.Index) error { return x.Remove(ctx, "d1", []string{"unknown"}) },
			want: []group.IndexEntry{past, edge, decided, open},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc, x := newIndex(1)
			putIndexDoc(t, fc, key, past, edge, decided, open)

			if err := tt.call(testContext(t), x); err != nil {
				t.Fatalf("call: %v", err)
			}

			if diff := gocmp.Diff(stored(t, fc, key), tt.want); diff != "" {
				t.Errorf("%s (-got +want):\n%s", key, diff)
			}
			// A deletion is not a write the fake records.
			wrote := writesOf(fc, key) > 0 || tt.want == nil
			if wrote != tt.wantWrite {
				t.Errorf("written = %t, want %t", wrote, tt.wantWrite)
			}
		})
	}
}

// The single document of earlier versions stays listed and is removed from, never added to.
func TestIndexLegacyDocument(t *testing.T) {
	t.Parallel()
	const legacyKey = "dealgroups:d1"
	fc, x := newIndex(4)
	ctx := testContext(t)
	old1, old2 := entry("old1", at.Add(time.Minute)), entry("old2", at.Add(2*time.Minute))
	putIndexDoc(t, fc, legacyKey, old1, old2)

	if err := x.Add(ctx, "d1", "new", at.Add(time.Hour)); err != nil {
		t.Fatalf("Add: %v", err)
	}
	// A retried open of a group the earlier version indexed adds it to its shard too.
	if err := x.Add(ctx, "d1", "old1", old1.ExpiresAt); err != nil {
		t.Fatalf("Add(old1): %v", err)
	}
	got, err := x.List(ctx, "d1")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := gocmp.Diff(sortEntries(got), []group.IndexEntry{entry("new", at.Add(time.Hour)), old1, old2}); diff != "" {
		t.Errorf("List (-got +want):\n%s", diff)
	}
	if n := writesOf(fc, legacyKey); n != 0 {
		t.Errorf("adds wrote the legacy document %d times, want never", n)
	}

	if err := x.Remove(ctx, "d1", []string{"old1"}); err != nil {
		t.Fatalf("Remove(old1): %v", err)
	}
	if diff := gocmp.Diff(stored(t, fc, legacyKey), []group.IndexEntry{old2}); diff != "" {
		t.Errorf("legacy document after Remove(old1) (-got +want):\n%s", diff)
	}
	got, err = x.List(ctx, "d1")
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	if diff := gocmp.Diff(sortEntries(got), []group.IndexEntry{entry("new", at.Add(time.Hour)), old2}); diff != "" {
		t.Errorf("List after Remove(old1) (-got +want):\n%s", diff)
	}

	if err := x.Remove(ctx, "d1", []string{"old2"}); err != nil {
		t.Fatalf("Remove(old2): %v", err)
	}
	if _, ok := fc.Value(storeName, legacyKey); ok {
		t.Errorf("the emptied legacy document is still stored")
	}
}

// A deal id with a colon was never indexed (ids are decimal); its legacy key would be
// another deal's shard, which must not be listed or written under the made-up deal.
func TestIndexDealIDWithColon(t *testing.T) {
	t.Parallel()
	fc, x := newIndex(1)
	ctx := testContext(t)
	if err := x.Add(ctx, "5", "g1", at.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}

	got, err := x.List(ctx, "5:0")
	if err != nil || len(got) != 0 {
		t.Errorf(`List("5:0") = %v, %v; want nothing`, got, err)
	}
	if err := x.Remove(ctx, "5:0", []string{"g1"}); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, fc, "dealgroups:5:0"); len(got) != 1 {
		t.Errorf(`deal 5's shard after Remove("5:0", g1) = %v, want g1 kept`, got)
	}
}

func TestIndexOutages(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		getErr, saveErr error
		call            func(ctx context.Context, x *daprstore.Index) error
	}{
		{
			name: "list", getErr: daprstatetest.ErrUnavailable,
			call: func(ctx context.Context, x *daprstore.Index) error { _, err := x.List(ctx, "d1"); return err },
		},
		{
			name: "add read", getErr: daprstatetest.ErrUnavailable,
			call: func(ctx context.Context, x *daprstore.Index) error { return x.Add(ctx, "d1", "g2", at.Add(time.Hour)) },
		},
		{
			name: "add write", saveErr: daprstatetest.ErrUnavailable,
			call: func(ctx context.Context, x *daprstore.Index) error { return x.Add(ctx, "d1", "g2", at.Add(time.Hour)) },
		},
		{
			name: "remove", getErr: daprstatetest.ErrUnavailable,
			call: func(ctx context.Context, x *daprstore.Index) error { return x.Remove(ctx, "d1", []string{"g1"}) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc, x := newIndex(4)
			ctx := testContext(t)
			if err := x.Add(ctx, "d1", "g1", at.Add(time.Hour)); err != nil {
				t.Fatal(err)
			}
			fc.SetGetErr(tt.getErr)
			fc.SetSaveErr(tt.saveErr)

			if err := tt.call(ctx, x); !errors.Is(err, daprstatetest.ErrUnavailable) {
				t.Errorf("error = %v, want %v", err, daprstatetest.ErrUnavailable)
			}
		})
	}
}

// The package comment's sizes: an entry of a group id from pkg/ids and a millisecond
// deadline, and the fullest of 16 shards once 10,000 groups are open on one deal.
func TestIndexShardSize(t *testing.T) {
	t.Parallel()
	const groups, shards = 10_000, 16
	// Many adders per shard make big batches: few writes, a quick test.
	const workers = 512
	// As documented: bytes of an entry with its comma, of the fullest shard.
	const maxEntry, maxShard = 75, 56 << 10
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	gen, err := ids.New(4)
	if err != nil {
		t.Fatal(err)
	}
	// Three non-zero millisecond digits: the longest deadline JSON has for a UTC time.
	expires := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Second).Add(123 * time.Millisecond)
	one, _ := json.Marshal(entry(gen.NextString(), expires))
	if len(one)+1 > maxEntry { // with its comma
		t.Errorf("entry %s is %d bytes with its comma, documented as at most %d", one, len(one)+1, maxEntry)
	}
	fc := daprstatetest.NewClient()
	x := daprstore.NewIndex(daprstate.New(fc, storeName), daprstore.IndexConfig{Shards: shards, Retention: retention})
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := range workers {
		wg.Go(func() {
			for next.Add(1) <= groups {
				if err := x.Add(ctx, "d1", gen.NextString(), expires); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("Add: %v", err)
	}

	total, largest := 0, 0
	keys := fc.Keys(storeName, "dealgroups:d1:")
	for _, k := range keys {
		raw, _ := fc.Value(storeName, k)
		total += len(raw)
		largest = max(largest, len(raw))
	}
	t.Logf("entry %d bytes (%s); %d groups over %d shards: %d bytes in all, mean %d, largest %d; %d writes",
		len(one)+1, one, groups, len(keys), total, total/len(keys), largest, len(fc.Writes(storeName, "dealgroups:")))
	if len(keys) != shards {
		t.Errorf("shard documents = %d, want %d", len(keys), shards)
	}
	if largest > maxShard {
		t.Errorf("largest shard = %d bytes, documented as at most %d", largest, maxShard)
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
