package daprstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/outbox"
	"github.com/groupbuy/groupbuy/pkg/batch"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// OutboxConfig shapes the outbox index.
type OutboxConfig struct {
	// Shards spread one bucket's registrations over documents, each written by its own
	// group commit.
	Shards int
	// Bucket is the time width of one index document.
	Bucket time.Duration
	// Lookback is where the recovery cursor starts when there is none yet (a new install).
	Lookback time.Duration
	// RegisterTimeout bounds a registration, queueing included (pkg/batch); the relay's Grace
	// must exceed it.
	RegisterTimeout time.Duration
	// MaxBatch bounds the registrations one write carries.
	MaxBatch int
}

// Outbox implements outbox.Index. Documents:
//
//	outbox:<bucket unix seconds>:<shard>  entries (order id/topic) registered in that bucket and shard
//	outbox:cursor                         the start of the oldest bucket recovery has not emptied
//	outbox:lease                          the recovery lease
//
// The bucket of a registration is taken when its batch is written, not when it was asked
// for, so no registration lands in a bucket older than RegisterTimeout. A bucket document
// holds at most (registrations per second × Bucket / Shards) entries of ~40 bytes, whatever
// the relay's state: at 2,000 recording writes/s with 1 s buckets and 4 shards, 500 entries,
// ~20 KB.
// Live publishing trims them within milliseconds, and a document left empty is deleted, so
// the steady state is a handful of small documents.
type Outbox struct {
	s    *daprstate.Store
	cfg  OutboxConfig
	now  func() time.Time
	reg  *batch.Batcher[int, string, registerResult]
	trim *batch.Batcher[string, []string, error]
}

type registerResult struct {
	slot string
	err  error
}

// NewOutbox returns the outbox index.
func NewOutbox(s *daprstate.Store, cfg OutboxConfig, now func() time.Time) *Outbox {
	if now == nil {
		now = time.Now
	}
	cfg.Shards = max(cfg.Shards, 1)
	x := &Outbox{s: s, cfg: cfg, now: now}
	x.reg = batch.New(x.flushRegistrations, cfg.MaxBatch, cfg.RegisterTimeout)
	x.trim = batch.New(x.flushTrims, cfg.MaxBatch, cfg.RegisterTimeout)
	return x
}

var _ outbox.Index = (*Outbox)(nil)

// Keys of the outbox index's fixed documents.
const (
	OutboxCursorKey = "outbox:cursor"
	OutboxLeaseKey  = "outbox:lease"
)

type slotDoc struct {
	IDs []string `json:"ids"`
}

type cursorDoc struct {
	Bucket time.Time `json:"bucket"`
}

// OutboxSlotKey is the key of the index document of a bucket and shard.
func OutboxSlotKey(bucket time.Time, shard int) string {
	return "outbox:" + strconv.FormatInt(bucket.Unix(), 10) + ":" + strconv.Itoa(shard)
}

func (x *Outbox) shard(entry string) int {
	orderID, _ := outbox.ParseEntry(entry)
	h := fnv.New32a()
	h.Write([]byte(orderID))
	return int(h.Sum32() % uint32(x.cfg.Shards))
}

// Register implements outbox.Index: the entry joins its shard's next group commit.
func (x *Outbox) Register(ctx context.Context, entry string) (string, error) {
	res, err := x.reg.Do(ctx, x.shard(entry), entry)
	if err != nil {
		return "", fmt.Errorf("register %s in the outbox index: %w", entry, err)
	}
	return res.slot, res.err
}

// flushRegistrations writes one shard's queued registrations into the current bucket's
// document in one CAS.
func (x *Outbox) flushRegistrations(ctx context.Context, shard int, ids []string) []registerResult {
	key := OutboxSlotKey(x.now().UTC().Truncate(x.cfg.Bucket), shard)
	_, err := daprstate.Mutate(ctx, x.s, key, casAttempts, func(d *slotDoc, _ bool) error {
		n := len(d.IDs)
		for _, id := range ids {
			if !slices.Contains(d.IDs, id) {
				d.IDs = append(d.IDs, id)
			}
		}
		if len(d.IDs) == n {
			return daprstate.ErrNoChange
		}
		return nil
	})
	out := make([]registerResult, len(ids))
	for i := range out {
		out[i] = registerResult{slot: key, err: err}
	}
	return out
}

// Due implements outbox.Index.
func (x *Outbox) Due(ctx context.Context, before time.Time, maxBuckets int) ([]outbox.Slot, time.Time, error) {
	var c cursorDoc
	_, err := x.s.Get(ctx, OutboxCursorKey, &c)
	if err != nil && !errors.Is(err, daprstate.ErrNotFound) {
		return nil, time.Time{}, err
	}
	if c.Bucket.IsZero() {
		c.Bucket = before.Add(-x.cfg.Lookback)
	}
	b := c.Bucket.UTC().Truncate(x.cfg.Bucket)
	var out []outbox.Slot
	for n := 0; n < maxBuckets && !b.Add(x.cfg.Bucket).After(before); n++ {
		for shard := range x.cfg.Shards {
			key := OutboxSlotKey(b, shard)
			var d slotDoc
			_, err := x.s.Get(ctx, key, &d)
			if errors.Is(err, daprstate.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, time.Time{}, err
			}
			if len(d.IDs) > 0 {
				out = append(out, outbox.Slot{Key: key, Bucket: b, Entries: d.IDs})
			}
		}
		b = b.Add(x.cfg.Bucket)
	}
	return out, b, nil
}

// Trim implements outbox.Index: the entries join the slot's next group commit (one read and
// one write for every trim that queued meanwhile). A document left empty is deleted in that
// write.
func (x *Outbox) Trim(ctx context.Context, slot string, entries []string) error {
	if !strings.HasPrefix(slot, "outbox:") {
		return fmt.Errorf("outbox slot %q: not an outbox index key", slot)
	}
	err, derr := x.trim.Do(ctx, slot, entries)
	if derr != nil {
		return fmt.Errorf("trim outbox slot %s: %w", slot, derr)
	}
	return err
}

// flushTrims removes the queued entries from one slot by ETag CAS, deleting the document when
// nothing is left in it.
func (x *Outbox) flushTrims(ctx context.Context, slot string, batches [][]string) []error {
	var gone []string
	for _, b := range batches {
		gone = append(gone, b...)
	}
	_, err := daprstate.Mutate(ctx, x.s, slot, casAttempts, func(d *slotDoc, found bool) error {
		n := len(d.IDs)
		d.IDs = slices.DeleteFunc(d.IDs, func(id string) bool { return slices.Contains(gone, id) })
		switch {
		case !found || len(d.IDs) == n:
			return daprstate.ErrNoChange
		case len(d.IDs) == 0:
			return daprstate.ErrDelete
		}
		return nil
	})
	out := make([]error, len(batches))
	for i := range out {
		out[i] = err
	}
	return out
}

// Advance implements outbox.Index.
func (x *Outbox) Advance(ctx context.Context, t time.Time) error {
	_, err := daprstate.Mutate(ctx, x.s, OutboxCursorKey, casAttempts, func(c *cursorDoc, _ bool) error {
		if !t.After(c.Bucket) {
			return daprstate.ErrNoChange // a stale pass must not move it back
		}
		c.Bucket = t.UTC()
		return nil
	})
	return err
}

// UpdateLease implements outbox.Index.
func (x *Outbox) UpdateLease(ctx context.Context, fn func(l *outbox.Lease) error) error {
	_, err := daprstate.Mutate(ctx, x.s, OutboxLeaseKey, casAttempts, func(l *outbox.Lease, _ bool) error {
		if err := fn(l); errors.Is(err, outbox.ErrUnchanged) {
			return daprstate.ErrNoChange
		} else {
			return err
		}
	})
	return err
}
