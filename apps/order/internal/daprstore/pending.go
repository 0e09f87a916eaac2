package daprstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/batch"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// PendingConfig tunes the pending set.
type PendingConfig struct {
	// Shards splits each window's orders by order id, so one window is not one hot document.
	Shards int
	// Window is the span of due times one document covers.
	Window time.Duration
	// Lag is how long after its end an empty window stays listed. Registrations never target
	// a window that ended before their own clock, so a window is dropped only once no write
	// in flight (a delayed flush, a replica's skewed clock) can still create it: Lag must
	// exceed FlushTimeout plus the clock skew between replicas.
	Lag time.Duration
	// Lease bounds one sweep's hold on a window; a runner that dies leaves it to others then.
	Lease time.Duration
	// FlushTimeout bounds a registration or removal, queued and written.
	FlushTimeout time.Duration
	// MaxBatch caps the entries one write carries (0: no cap).
	MaxBatch int
	Now      func() time.Time
}

// Pending implements order.Pending with bounded documents, written by group commit:
//
//	pendingwin:<start>:<shard>  orders due in [start, start+Window) whose id hashes to shard
//	                            (start in Unix seconds): at most the registrations of one
//	                            window and shard, about 125 bytes each (see README)
//	pendingwins                 the directory: every window that may hold entries (about
//	                            12 bytes each; PAY_WINDOW/Window of them plus the few overdue
//	                            windows still waiting for a charge or a retry), and whether
//	                            the legacy shards are drained
//	pendinglease:<start>        a sweep's lease on one window (expires with the lease)
//	pending:<shard>             legacy: the unbounded shards of earlier versions, swept as
//	                            one more window until they are empty, then never read again
//
// Adds and removals that arrive while a write of the same document is in flight share the
// next write (pkg/batch), one CAS per batch, retried on ETag conflicts with backoff. An Add
// returns once its entry is stored, so placement can rely on it before taking stock.
type Pending struct {
	s       *daprstate.Store
	cfg     PendingConfig
	batcher *batch.Batcher[pendingDocKey, pendingOp, error]
	// legacy stays true until the directory says the legacy shards are drained: until then
	// a removal also looks there.
	legacyMu sync.Mutex
	legacy   bool
}

// NewPending returns the pending set.
func NewPending(s *daprstate.Store, cfg PendingConfig) *Pending {
	cfg.Shards = max(cfg.Shards, 1)
	if cfg.Window < time.Second {
		cfg.Window = time.Second
	}
	cfg.Window = cfg.Window.Truncate(time.Second)
	if cfg.Lag <= 0 {
		cfg.Lag = time.Minute
	}
	if cfg.Lease <= 0 {
		cfg.Lease = time.Minute
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = 5 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Pending{s: s, cfg: cfg, legacy: true}
	p.batcher = batch.New(p.flush, cfg.MaxBatch, cfg.FlushTimeout)
	return p
}

const (
	pendingDirKey = "pendingwins"
	legacyWindow  = "legacy"
)

type pendingDoc struct {
	Orders map[string]pendingItem `json:"orders"`
}

type pendingItem struct {
	UserID string    `json:"user_id"`
	DealID string    `json:"deal_id"`
	Due    time.Time `json:"due"`
}

// pendingDir is bounded by the windows that hold entries.
type pendingDir struct {
	Windows       []int64 `json:"windows"`
	LegacyDrained bool    `json:"legacy_drained,omitempty"`
}

type pendingLease struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// pendingDocKey is one document: a window's shard (window is its start), or a legacy shard.
type pendingDocKey struct {
	key    string
	window int64
	legacy bool
}

type pendingOp struct {
	add bool
	e   order.PendingEntry
}

func (p *Pending) shard(orderID string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(orderID))
	return h.Sum32() % uint32(p.cfg.Shards)
}

func (p *Pending) windowOf(t time.Time) int64 {
	w := int64(p.cfg.Window / time.Second)
	u := t.Unix()
	return u - ((u%w)+w)%w
}

func winKey(start int64, shard uint32) string { return fmt.Sprintf("pendingwin:%d:%d", start, shard) }

func legacyKey(shard int) string { return fmt.Sprintf("pending:%d", shard) }

func leaseKey(w string) string { return "pendinglease:" + w }

// Add implements order.Pending. An entry due before now goes to now's window: windows that
// ended are never written to (see PendingConfig.Lag).
func (p *Pending) Add(ctx context.Context, e order.PendingEntry) error {
	start := max(p.windowOf(e.Due), p.windowOf(p.cfg.Now()))
	return p.do(ctx, pendingDocKey{key: winKey(start, p.shard(e.OrderID)), window: start}, pendingOp{add: true, e: e})
}

// Remove implements order.Pending.
func (p *Pending) Remove(ctx context.Context, e order.PendingEntry) error {
	if k, ok := p.parseKey(e.Key); ok {
		return p.do(ctx, k, pendingOp{e: e})
	}
	start := p.windowOf(e.Due)
	if err := p.do(ctx, pendingDocKey{key: winKey(start, p.shard(e.OrderID)), window: start}, pendingOp{e: e}); err != nil {
		return err
	}
	p.legacyMu.Lock()
	legacy := p.legacy
	p.legacyMu.Unlock()
	if !legacy {
		return nil
	}
	return p.do(ctx, pendingDocKey{key: legacyKey(int(p.shard(e.OrderID))), legacy: true}, pendingOp{e: e})
}

func (p *Pending) parseKey(key string) (pendingDocKey, bool) {
	var start int64
	var shard, legacy int
	if _, err := fmt.Sscanf(key, "pendingwin:%d:%d", &start, &shard); err == nil && key == winKey(start, uint32(shard)) {
		return pendingDocKey{key: key, window: start}, true
	}
	if _, err := fmt.Sscanf(key, "pending:%d", &legacy); err == nil && key == legacyKey(legacy) {
		return pendingDocKey{key: key, legacy: true}, true
	}
	return pendingDocKey{}, false
}

func (p *Pending) do(ctx context.Context, k pendingDocKey, op pendingOp) error {
	err, derr := p.batcher.Do(ctx, k, op)
	if derr != nil {
		return fmt.Errorf("pending %s: %w", k.key, derr)
	}
	return err
}

// flush is one write of one document for a batch of adds and removals: read, apply in order,
// CAS with the ETag read; on a conflict the batch is re-applied to a fresh read after a
// backoff, until the flush's context ends. A window's first document is listed in the
// directory before it is created, so the sweep never misses a stored entry.
func (p *Pending) flush(ctx context.Context, k pendingDocKey, ops []pendingOp) []error {
	all := func(err error) []error {
		out := make([]error, len(ops))
		for i := range out {
			out[i] = err
		}
		return out
	}
	for attempt := 0; ; attempt++ {
		var d pendingDoc
		etag, err := p.s.Get(ctx, k.key, &d)
		missing := errors.Is(err, daprstate.ErrNotFound)
		if err != nil && !missing {
			return all(err)
		}
		changed := false
		for _, op := range ops {
			_, present := d.Orders[op.e.OrderID]
			switch {
			case op.add && !present:
				if d.Orders == nil {
					d.Orders = map[string]pendingItem{}
				}
				d.Orders[op.e.OrderID] = pendingItem{UserID: op.e.UserID, DealID: op.e.DealID, Due: op.e.Due}
				changed = true
			case !op.add && present:
				delete(d.Orders, op.e.OrderID)
				changed = true
			}
		}
		if !changed {
			return all(nil)
		}
		if missing {
			if !k.legacy {
				if err := p.list(ctx, k.window); err != nil {
					return all(err)
				}
			}
			err = p.s.Create(ctx, k.key, d)
		} else {
			err = p.s.Update(ctx, k.key, d, etag)
		}
		if err == nil {
			return all(nil)
		}
		if !errors.Is(err, daprstate.ErrConflict) && !errors.Is(err, daprstate.ErrExists) {
			return all(err)
		}
		if err := daprstate.Backoff(ctx, attempt); err != nil {
			return all(fmt.Errorf("pending %s after %d etag conflicts: %w", k.key, attempt+1, err))
		}
	}
}

// list makes sure the directory names window start.
func (p *Pending) list(ctx context.Context, start int64) error {
	var d pendingDir
	if _, err := p.s.Get(ctx, pendingDirKey, &d); err == nil && slices.Contains(d.Windows, start) {
		return nil
	} else if err != nil && !errors.Is(err, daprstate.ErrNotFound) {
		return err
	}
	_, err := daprstate.Mutate(ctx, p.s, pendingDirKey, casAttempts, func(d *pendingDir, _ bool) error {
		i, found := slices.BinarySearch(d.Windows, start)
		if found {
			return daprstate.ErrNoChange
		}
		d.Windows = slices.Insert(d.Windows, i, start)
		return nil
	})
	return err
}

func (p *Pending) dir(ctx context.Context) (pendingDir, error) {
	var d pendingDir
	_, err := p.s.Get(ctx, pendingDirKey, &d)
	if err != nil && !errors.Is(err, daprstate.ErrNotFound) {
		return d, err
	}
	if d.LegacyDrained {
		p.legacyMu.Lock()
		p.legacy = false
		p.legacyMu.Unlock()
	}
	return d, nil
}

// Windows implements order.Pending: the legacy shards first while they may hold entries.
func (p *Pending) Windows(ctx context.Context, t time.Time) ([]string, error) {
	d, err := p.dir(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	if !d.LegacyDrained {
		out = append(out, legacyWindow)
	}
	for _, start := range d.Windows {
		if start < t.Unix() || (start == t.Unix() && t.Nanosecond() > 0) {
			out = append(out, strconv.FormatInt(start, 10))
		}
	}
	return out, nil
}

// Due implements order.Pending: it reads every listed window that starts before t.
func (p *Pending) Due(ctx context.Context, t time.Time) ([]order.PendingEntry, error) {
	ws, err := p.Windows(ctx, t)
	if err != nil {
		return nil, err
	}
	var out []order.PendingEntry
	for _, w := range ws {
		docs, err := p.read(ctx, w)
		if err != nil {
			return nil, err
		}
		for _, d := range docs {
			out = append(out, d.due(t)...)
		}
	}
	sortEntries(out)
	return out, nil
}

func sortEntries(es []order.PendingEntry) {
	slices.SortFunc(es, func(a, b order.PendingEntry) int {
		return cmp.Or(a.Due.Compare(b.Due), cmp.Compare(a.OrderID, b.OrderID))
	})
}

type readDoc struct {
	key   string
	etag  string // "" when absent
	items map[string]pendingItem
}

func (d readDoc) due(t time.Time) []order.PendingEntry {
	var out []order.PendingEntry
	for id, it := range d.items {
		if it.Due.Before(t) {
			out = append(out, order.PendingEntry{OrderID: id, UserID: it.UserID, DealID: it.DealID, Due: it.Due, Key: d.key})
		}
	}
	return out
}

// read fetches a window's shard documents concurrently.
func (p *Pending) read(ctx context.Context, w string) ([]readDoc, error) {
	keys := make([]string, p.cfg.Shards)
	for i := range keys {
		if w == legacyWindow {
			keys[i] = legacyKey(i)
			continue
		}
		start, err := strconv.ParseInt(w, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("pending window %q: %w", w, err)
		}
		keys[i] = winKey(start, uint32(i))
	}
	docs := make([]readDoc, len(keys))
	errs := make([]error, len(keys))
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			var d pendingDoc
			etag, err := p.s.Get(ctx, k, &d)
			if errors.Is(err, daprstate.ErrNotFound) {
				err = nil
			}
			docs[i], errs[i] = readDoc{key: k, etag: etag, items: d.Orders}, err
		})
	}
	wg.Wait()
	return docs, errors.Join(errs...)
}

// errLeased ends a claim of a window another claim holds.
var errLeased = errors.New("pending: window leased")

// Claim implements order.Pending. A window found empty is dropped once it ended Lag ago (the
// legacy shards are marked drained), so the directory lists only windows with work.
func (p *Pending) Claim(ctx context.Context, w string, t time.Time) (order.PendingClaim, bool, error) {
	now := p.cfg.Now().UTC()
	owner := rand.Text()
	_, err := daprstate.Mutate(ctx, p.s, leaseKey(w), casAttempts, func(l *pendingLease, _ bool) error {
		if l.Owner != "" && l.Until.After(now) {
			return errLeased
		}
		*l = pendingLease{Owner: owner, Until: now.Add(p.cfg.Lease)}
		return nil
	}, daprstate.TTL(p.cfg.Lease+p.cfg.Lag))
	if errors.Is(err, errLeased) {
		return order.PendingClaim{}, false, nil
	}
	if err != nil {
		return order.PendingClaim{}, false, err
	}
	c := order.PendingClaim{Window: w, Owner: owner}
	docs, err := p.read(ctx, w)
	if err != nil {
		return c, true, err
	}
	held := 0
	for _, d := range docs {
		held += len(d.items)
		c.Entries = append(c.Entries, d.due(t)...)
	}
	sortEntries(c.Entries)
	if held == 0 {
		if err := p.drop(ctx, w, docs, now); err != nil {
			return c, true, err
		}
	}
	return c, true, nil
}

// drop forgets an empty window: the legacy shards are marked drained at once (nothing writes
// them any more), a time window once it ended Lag ago. Its documents go first, each only if
// unchanged since it was read empty; a write in between keeps the window listed.
func (p *Pending) drop(ctx context.Context, w string, docs []readDoc, now time.Time) error {
	if w == legacyWindow {
		_, err := daprstate.Mutate(ctx, p.s, pendingDirKey, casAttempts, func(d *pendingDir, _ bool) error {
			if d.LegacyDrained {
				return daprstate.ErrNoChange
			}
			d.LegacyDrained = true
			return nil
		})
		return err
	}
	start, err := strconv.ParseInt(w, 10, 64)
	if err != nil {
		return err
	}
	if end := time.Unix(start, 0).Add(p.cfg.Window); now.Sub(end) < p.cfg.Lag {
		return nil
	}
	for _, d := range docs {
		if d.etag == "" {
			continue
		}
		if err := p.s.Delete(ctx, d.key, d.etag); errors.Is(err, daprstate.ErrConflict) {
			return nil
		} else if err != nil {
			return err
		}
	}
	_, err = daprstate.Mutate(ctx, p.s, pendingDirKey, casAttempts, func(d *pendingDir, _ bool) error {
		i, found := slices.BinarySearch(d.Windows, start)
		if !found {
			return daprstate.ErrNoChange
		}
		d.Windows = slices.Delete(d.Windows, i, i+1)
		return nil
	})
	return err
}

// Release implements order.Pending: the lease ends if c still holds it.
func (p *Pending) Release(ctx context.Context, c order.PendingClaim) error {
	_, err := daprstate.Mutate(ctx, p.s, leaseKey(c.Window), casAttempts, func(l *pendingLease, found bool) error {
		if !found || l.Owner != c.Owner {
			return daprstate.ErrNoChange
		}
		*l = pendingLease{}
		return nil
	}, daprstate.TTL(p.cfg.Lease+p.cfg.Lag))
	return err
}
