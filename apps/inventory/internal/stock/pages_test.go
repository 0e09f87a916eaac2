package stock_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
)

// pageStore keeps the pages of ApplyPaged in memory and checks that a bucket write only
// creates new keys and drops listed ones.
type pageStore struct {
	t     *testing.T
	pages map[string]stock.Page
	seq   int
}

func (ps *pageStore) paging(out, maxHolds, finishedCap int) *stock.Paging {
	return &stock.Paging{Out: out, Max: maxHolds, FinishedCap: finishedCap,
		Holds: func(k string) map[string]stock.Hold {
			p, ok := ps.pages[k]
			if !ok {
				ps.t.Fatalf("bucket lists page %s, which was never written", k)
			}
			return p.Holds
		},
		// As the service's index does, over the stored pages, which are the listed ones.
		Find: func(id string) (string, bool) {
			for k, p := range ps.pages {
				if _, ok := p.Holds[id]; ok {
					return k, true
				}
			}
			return "", false
		},
		NewKey: func() string { ps.seq++; return "p" + strconv.Itoa(ps.seq) }}
}

func (ps *pageStore) write(ch stock.PageChanges) {
	for _, p := range ch.Create {
		if _, ok := ps.pages[p.Key]; ok {
			ps.t.Fatalf("page %s written twice", p.Key)
		}
		ps.pages[p.Key] = p
	}
	for _, k := range ch.Drop {
		if _, ok := ps.pages[k]; !ok {
			ps.t.Fatalf("dropping page %s, which was never written", k)
		}
		delete(ps.pages, k)
	}
}

// checkPaged checks a paged bucket's bounds: in-document reserved holds within out, records
// of paged holds within finishedCap, pages within maxHolds and counted right by their refs.
func (ps *pageStore) checkPaged(b stock.Bucket, pg *stock.Paging) error {
	if err := b.Check(); err != nil {
		return err
	}
	reserved, named := 0, map[string]int{}
	for _, h := range b.Holds {
		switch {
		case h.State == stock.StateReserved:
			reserved++
		case h.Page != "":
			named[h.Page]++
		}
	}
	if reserved > pg.Out {
		return fmt.Errorf("%d reserved holds in the document, want at most %d", reserved, pg.Out)
	}
	if n := len(named); n > 0 && sum(named) > pg.FinishedCap {
		return fmt.Errorf("%d records name pages, want at most %d", sum(named), pg.FinishedCap)
	}
	for _, r := range b.Pages {
		p := ps.pages[r.Key]
		if len(p.Holds) > pg.Max {
			return fmt.Errorf("page %s holds %d, want at most %d", r.Key, len(p.Holds), pg.Max)
		}
		if r.Holds+named[r.Key] != len(p.Holds) || r.Holds == 0 {
			return fmt.Errorf("page %s of %d holds listed with %d live and %d records", r.Key, len(p.Holds), r.Holds, named[r.Key])
		}
	}
	return nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// randomOps is a batch of random ops over orders o0..o<orders-1>.
func randomOps(rng *rand.Rand, now time.Time, orders int) []stock.Op {
	kinds := []stock.OpKind{stock.OpReserve, stock.OpReserve, stock.OpReserve, stock.OpCommit, stock.OpRelease, stock.OpProbe}
	ops := make([]stock.Op, 1+rng.IntN(8))
	for i := range ops {
		ops[i] = stock.Op{
			Kind:      kinds[rng.IntN(len(kinds))],
			OrderID:   fmt.Sprintf("o%d", rng.IntN(orders)),
			Qty:       1 + rng.IntN(3),
			Until:     until,
			Mark:      rng.IntN(4) == 0,
			Tombstone: rng.IntN(2) == 0,
		}
		if rng.IntN(10) == 0 {
			ops[i].NotAfter = now.Add(-time.Nanosecond)
		}
	}
	return ops
}

// Paging moves holds between documents and changes no answer: with nothing pruned, a paged
// bucket answers every op as an unpaged one does, has the same counters, and reads back
// (Unpaged) as the same holds, while its document stays within the paging bounds.
func TestApplyPagedAnswersAsUnpaged(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var paged, rewrites int
	for run := range 50 {
		ps := &pageStore{t: t, pages: map[string]stock.Page{}}
		pg := ps.paging(1+rng.IntN(3), 2+rng.IntN(4), 1+rng.IntN(4))
		meta := stock.Meta{DealID: "d1", Stock: 20 + rng.IntN(60), Buckets: 1}
		plain, b := meta.InitialBucket(0), meta.InitialBucket(0)
		now := t0
		for step := range 80 {
			now = now.Add(time.Duration(rng.IntN(3)) * time.Second)
			ops := randomOps(rng, now, 60)
			want, wantChanged := stock.Apply(&plain, ops, now, stock.Window{})
			before := clone(b)
			got, changed, ch := stock.ApplyPaged(&b, ops, now, stock.Window{}, pg)
			if changed != wantChanged {
				t.Fatalf("run %d step %d: changed %t, unpaged %t after %+v", run, step, changed, wantChanged, ops)
			}
			if !changed && (len(ch.Create)+len(ch.Drop) > 0 || !cmp.Equal(b, before, cmpopts.EquateEmpty())) {
				t.Fatalf("run %d step %d: no change, yet pages %+v or a changed bucket", run, step, ch)
			}
			ps.write(ch)
			paged += len(ch.Create)
			for _, p := range ch.Create {
				if before.Pages != nil && len(p.Holds) > 0 && len(ch.Drop) > 0 {
					rewrites++
				}
			}
			for i := range got {
				if got[i].Status != want[i].Status || got[i].State != want[i].State || fmt.Sprint(got[i].Err) != fmt.Sprint(want[i].Err) {
					t.Fatalf("run %d step %d: %+v answered %+v paged, %+v unpaged", run, step, ops[i], got[i], want[i])
				}
			}
			if err := ps.checkPaged(b, pg); err != nil {
				t.Fatalf("run %d step %d: %v", run, step, err)
			}
			flat := stock.Unpaged(b, pg.Holds)
			if diff := cmp.Diff(flat, plain, cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("run %d step %d: paged bucket reads back unlike the unpaged one (-paged +unpaged):\n%s", run, step, diff)
			}
		}
		for k := range ps.pages {
			if b.Pages == nil || !listed(b, k) {
				t.Fatalf("run %d: page %s left behind, unlisted", run, k)
			}
		}
	}
	if paged < 100 || rewrites < 10 {
		t.Errorf("%d pages written, %d with others dropped: the runs hardly paged", paged, rewrites)
	}
}

func listed(b stock.Bucket, key string) bool {
	for _, r := range b.Pages {
		if r.Key == key {
			return true
		}
	}
	return false
}

// With the window pruning too, a paged bucket keeps its invariants and bounds, and a
// reserved hold stays reserved, with its units, until an op of its order finishes it.
func TestApplyPagedWithPruning(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	w := stock.Window{Age: 20 * time.Second, Ops: 6}
	var pruned int
	for run := range 50 {
		ps := &pageStore{t: t, pages: map[string]stock.Page{}}
		pg := ps.paging(1+rng.IntN(3), 2+rng.IntN(4), 1+rng.IntN(4))
		b := stock.Meta{DealID: "d1", Stock: 20 + rng.IntN(60), Buckets: 1}.InitialBucket(0)
		now := t0
		for step := range 80 {
			now = now.Add(time.Duration(rng.IntN(4)) * time.Second)
			ops := randomOps(rng, now, 60)
			before := stock.Unpaged(b, pg.Holds)
			_, _, ch := stock.ApplyPaged(&b, ops, now, w, pg)
			ps.write(ch)
			if err := ps.checkPaged(b, pg); err != nil {
				t.Fatalf("run %d step %d: %v", run, step, err)
			}
			after := stock.Unpaged(b, pg.Holds)
			finished := map[string]bool{}
			for _, op := range ops {
				finished[op.OrderID] = finished[op.OrderID] || op.Kind == stock.OpCommit || op.Kind == stock.OpRelease
			}
			for id, h := range before.Holds {
				if h.State == stock.StateReserved && !finished[id] && after.Holds[id] != h {
					t.Fatalf("run %d step %d: %s's reserved hold %+v became %+v", run, step, id, h, after.Holds[id])
				}
				if _, ok := after.Holds[id]; !ok {
					pruned++
				}
			}
		}
	}
	if pruned < 100 {
		t.Errorf("only %d records pruned: the window hardly worked", pruned)
	}
}

// The audit read puts paged holds back into their bucket.
func TestBucketsReadsPagedHolds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, stock.Config{PageOut: 2, PageMax: 4})
	mustCreate(t, e, "d1", 10)
	for i := range 7 {
		mustReserve(t, e, "d1", fmt.Sprintf("o%d", i), 1)
	}
	audit, err := e.svc.Buckets(context.Background(), "d1")
	if err != nil {
		t.Fatal(err)
	}
	if len(e.store.Pages("d1", 0)) == 0 || len(audit[0].Holds) != 7 || audit[0].Reserved != 7 {
		t.Errorf("audit read of a paged bucket: %d holds, %+v", len(audit[0].Holds), audit[0])
	}
}

// staleOnce answers the first bucket read with an old copy of the bucket, as a replica reads
// just before another one's write lands.
type staleOnce struct {
	stock.Store
	mu    sync.Mutex
	stale *stock.Bucket
}

func (s *staleOnce) Bucket(ctx context.Context, dealID string, i int) (stock.Bucket, string, error) {
	s.mu.Lock()
	old := s.stale
	s.stale = nil
	s.mu.Unlock()
	if old != nil {
		return *old, "stale", nil
	}
	return s.Store.Bucket(ctx, dealID, i)
}

// A replica that read a bucket listing a page another replica has since merged away and
// deleted reads the bucket again instead of failing.
func TestStaleReadOfADeletedPageRetries(t *testing.T) {
	t.Parallel()
	cfg := stock.Config{PageOut: 2, PageMax: 8}
	e := newEnv(t, cfg)
	ctx := context.Background()
	mustCreate(t, e, "d1", 20)
	for _, id := range []string{"o0", "o1", "o2"} {
		mustReserve(t, e, "d1", id, 1)
	}
	old := e.store.Buckets("d1")[0]
	first := old.Pages[0].Key
	for _, id := range []string{"o0", "o1"} {
		if _, err := e.svc.Release(ctx, "d1", id); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"o3", "o4", "o5"} { // pages out, merging what is left of the first page
		mustReserve(t, e, "d1", id, 1)
	}
	// Unlisted, the page stays stored for its grace (readers of the older bucket load it).
	if listed(e.store.Buckets("d1")[0], first) || !slices.Contains(e.store.Pages("d1", 0), first) {
		t.Fatalf("page %s: listed %t, stored %v; want unlisted and still stored", first, listed(e.store.Buckets("d1")[0], first), e.store.Pages("d1", 0))
	}
	e.svc.Close() // deletes unlisted pages without waiting out their grace
	if slices.Contains(e.store.Pages("d1", 0), first) {
		t.Fatalf("page %s still stored: the test needs it merged away", first)
	}

	cfg.Clock = e.clock.now
	other, err := stock.NewService(&staleOnce{Store: e.store, stale: &old}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := other.Reserve(ctx, "d1", "o2", 1, until); err != nil || r.State != stock.StateReserved {
		t.Errorf("replayed reserve after a stale read = %+v, %v; want o2's hold, reserved", r, err)
	}
	auditor, err := stock.NewService(&staleOnce{Store: e.store, stale: &old}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if audit, err := auditor.Buckets(ctx, "d1"); err != nil || audit[0].Holds["o2"].State != stock.StateReserved {
		t.Errorf("audit read after a stale read: %v, o2 %+v", err, audit)
	}
}

// lostReply lands a bucket write that creates a page but answers it with an error, as when a
// write's reply is lost on the way back.
type lostReply struct {
	stock.Store
	armed atomic.Bool
	pages atomic.Int32
}

func (s *lostReply) CreatePage(ctx context.Context, p stock.Page) error {
	s.pages.Add(1)
	return s.Store.CreatePage(ctx, p)
}

func (s *lostReply) UpdateBucket(ctx context.Context, b stock.Bucket, etag string) error {
	if err := s.Store.UpdateBucket(ctx, b, etag); err != nil {
		return err
	}
	if s.pages.Load() > 0 && s.armed.CompareAndSwap(true, false) {
		return errors.New("reply lost")
	}
	return nil
}

// A page write whose bucket write has an unknown outcome keeps its page: the bucket may list
// it (here it does), and every later batch needs it.
func TestPagesOfAnUnknownWriteStay(t *testing.T) {
	t.Parallel()
	fake := storetest.NewFake()
	store := &lostReply{Store: fake}
	store.armed.Store(true)
	svc, err := stock.NewService(store, stock.Config{PageOut: 2, PageMax: 8, SoldOutTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := svc.Create(ctx, "d1", 10); err != nil {
		t.Fatal(err)
	}
	var lost error
	for _, id := range []string{"o0", "o1", "o2"} {
		if _, err := svc.Reserve(ctx, "d1", id, 1, until); err != nil {
			lost = err
		}
	}
	if lost == nil || len(fake.Buckets("d1")[0].Pages) == 0 {
		t.Fatalf("the test needs the paging write's reply lost: error %v, pages %v", lost, fake.Buckets("d1")[0].Pages)
	}
	for _, id := range []string{"o2", "o3"} {
		if r, err := svc.Reserve(ctx, "d1", id, 1, until); err != nil || r.State != stock.StateReserved {
			t.Errorf("Reserve(%s) after the lost reply = %+v, %v", id, r, err)
		}
	}
}

// A sale of many orders on one bucket keeps the bucket document small: the holds move to
// pages, a replica that never saw them (empty cache) finds them there for replays, commits
// and releases, the audit read lists them, and pages that lost all their holds are deleted.
func TestServicePagesHolds(t *testing.T) {
	t.Parallel()
	cfg := stock.Config{PageOut: 4, PageMax: 8, PageFinishedCap: 4}
	e := newEnv(t, cfg)
	ctx := context.Background()
	mustCreate(t, e, "d1", 100)
	for i := range 40 {
		if r := mustReserve(t, e, "d1", fmt.Sprintf("o%d", i), 1); r.Outcome != stock.OutcomeReserved {
			t.Fatalf("o%d: %+v", i, r)
		}
	}
	e.svc.Close() // unlisted pages are deleted in the background
	b := e.store.Buckets("d1")[0]
	if n := len(b.Holds); n > cfg.PageOut || len(b.Pages) < 4 || len(e.store.Pages("d1", 0)) != len(b.Pages) {
		t.Fatalf("bucket keeps %d holds and lists %d pages (%d stored) after 40 reservations", n, len(b.Pages), len(e.store.Pages("d1", 0)))
	}

	cfg.Clock = e.clock.now
	other, err := stock.NewService(e.store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := other.Reserve(ctx, "d1", "o3", 1, until); err != nil || r.Outcome != stock.OutcomeReserved || r.State != stock.StateReserved {
		t.Errorf("replayed reserve of a paged hold on another replica = %+v, %v", r, err)
	}
	for i := range 40 {
		id := fmt.Sprintf("o%d", i)
		op, want := other.Commit, stock.StateCommitted
		if i%2 == 1 {
			op, want = other.Release, stock.StateReleased
		}
		if st, err := op(ctx, "d1", id); err != nil || st != want {
			t.Fatalf("%s on another replica = %s, %v; want %s", id, st, err, want)
		}
		if st, err := e.svc.Commit(ctx, "d1", id); i%2 == 0 && (err != nil || st != stock.StateCommitted) {
			t.Fatalf("replayed commit of %s = %s, %v", id, st, err)
		}
	}
	audit, err := e.svc.Buckets(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if err := audit[0].Check(); err != nil || audit[0].Sold != 20 || audit[0].Available != 80 || len(audit[0].Pages) != 0 {
		t.Errorf("audit read %+v: %v", audit[0], err)
	}
	other.Close()
	e.svc.Close()
	b = e.store.Buckets("d1")[0]
	if len(b.Pages) != 0 || len(e.store.Pages("d1", 0)) != 0 {
		t.Errorf("every hold finished, yet the bucket lists %v and the store keeps %v", b.Pages, e.store.Pages("d1", 0))
	}
	if err := b.Check(); err != nil {
		t.Error(err)
	}
}
