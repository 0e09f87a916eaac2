package daprstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/batch"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// Defaults of IndexConfig.
const (
	DefaultIndexShards = 16
	// DefaultIndexPruneMargin: a group is decided at its deadline at the latest, when its
	// deadline reminder fires (lateness p99 0.2 s at 10,000 open groups, README S4); a
	// failed turn is retried every DEADLINE_RETRY_PERIOD (30 s). Ten minutes is twenty
	// failed firings in a row: an outage of the app, its sidecar, the scheduler or the store.
	DefaultIndexPruneMargin = 10 * time.Minute
	// DefaultIndexFlushTimeout bounds an Add or Remove, queued and written.
	DefaultIndexFlushTimeout = 5 * time.Second
)

// readParallelism bounds the shard reads of one List.
const readParallelism = 16

// IndexConfig shapes the deal index.
type IndexConfig struct {
	// Shards splits each deal's groups over this many documents by group id (FNV-32a of the
	// id mod Shards), each written by its own group commit (DefaultIndexShards when 0). Keep
	// it fixed once groups are listed: lowering it hides the groups in the shards above, and
	// after raising it a removal looks for a group in its new shard only, so the groups
	// added before leave by pruning alone.
	Shards int
	// Retention is how long a decided group stays listed (group.Config.IndexRetention).
	Retention time.Duration
	// PruneMargin is how late after its deadline a group may still be decided
	// (DefaultIndexPruneMargin when 0). A write of a document drops the entries whose
	// deadline is more than Retention+PruneMargin ago: those groups are decided and past
	// their listing. A group decided later than that (an outage longer than PruneMargin)
	// leaves the listing sooner than Retention after its decision, an undecided one before
	// it is decided; it is no longer joinable either way (its deadline passed), and its
	// state and outcome are not touched.
	PruneMargin time.Duration
	// FlushTimeout bounds an Add or Remove, queued and written (DefaultIndexFlushTimeout
	// when 0).
	FlushTimeout time.Duration
	// MaxBatch caps the operations one write carries (0: no cap).
	MaxBatch int
	// Now is the clock pruning reads (time.Now when nil).
	Now func() time.Time
}

// Index implements group.Index over sharded documents changed by ETag CAS (see the package
// comment for their keys and sizes). It is written when a group opens and when decided
// groups are pruned, not on every join or payment: listings read each group's status from
// its state.
//
// Adds and removals that arrive while a write of the same document is in flight share the
// next write (pkg/batch): one read-modify-CAS per document per batch, retried on ETag
// conflicts, its outcome the answer of every operation of the batch. Every write also
// drops the entries past Retention+PruneMargin, and deletes a document left empty, so a
// document holds no more than the groups of its deal and shard that are open or recently
// decided.
type Index struct {
	s       *daprstate.Store
	cfg     IndexConfig
	batcher *batch.Batcher[string, indexOp, error]
}

var _ group.Index = (*Index)(nil)

// NewIndex returns the deal index.
func NewIndex(s *daprstate.Store, cfg IndexConfig) *Index {
	if cfg.Shards <= 0 {
		cfg.Shards = DefaultIndexShards
	}
	cfg.Retention = max(cfg.Retention, 0)
	if cfg.PruneMargin <= 0 {
		cfg.PruneMargin = DefaultIndexPruneMargin
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = DefaultIndexFlushTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	x := &Index{s: s, cfg: cfg}
	x.batcher = batch.New(x.flush, cfg.MaxBatch, cfg.FlushTimeout)
	return x
}

// indexDoc is the stored form of a shard and of the legacy document alike.
type indexDoc struct {
	Groups []group.IndexEntry `json:"groups"`
}

// indexOp is one queued change of a document: an entry to add (GroupID "" for none) or
// groups to remove.
type indexOp struct {
	add    group.IndexEntry
	remove []string
}

// legacyIndexKey is the single document of a deal that earlier versions wrote.
func legacyIndexKey(dealID string) string { return "dealgroups:" + dealID }

// shardKey cannot collide with another deal's shard (the shard number after the last colon
// is all digits), but can with the legacy document of a deal id that contains a colon: see
// hasLegacy.
func shardKey(dealID string, shard int) string {
	return "dealgroups:" + dealID + ":" + strconv.Itoa(shard)
}

// hasLegacy reports whether dealID may have a legacy document. Deal ids are decimal
// (pkg/ids), so one with a colon was never indexed; its legacy key would be another deal's
// shard ("5:3" names shard 3 of deal 5), which a request for the made-up deal must not read
// or write.
func hasLegacy(dealID string) bool { return !strings.Contains(dealID, ":") }

func (x *Index) shard(groupID string) int {
	h := fnv.New32a()
	h.Write([]byte(groupID))
	return int(h.Sum32() % uint32(x.cfg.Shards))
}

// Add implements group.Index: the entry joins its shard's next write. Adding a listed group
// is a no-op. A group listed only in the legacy document is added to its shard as well
// (List answers it once); that takes a retried open of a group an earlier version indexed.
func (x *Index) Add(ctx context.Context, dealID, groupID string, expiresAt time.Time) error {
	return x.do(ctx, shardKey(dealID, x.shard(groupID)), indexOp{add: group.IndexEntry{GroupID: groupID, ExpiresAt: expiresAt}})
}

// Remove implements group.Index: each shard holding one of groupIDs, and the legacy
// document, is written once.
func (x *Index) Remove(ctx context.Context, dealID string, groupIDs []string) error {
	if len(groupIDs) == 0 {
		return nil
	}
	byKey := map[string][]string{}
	for _, id := range groupIDs {
		k := shardKey(dealID, x.shard(id))
		byKey[k] = append(byKey[k], id)
	}
	if hasLegacy(dealID) {
		byKey[legacyIndexKey(dealID)] = groupIDs
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for k, ids := range byKey {
		wg.Go(func() {
			if err := x.do(ctx, k, indexOp{remove: ids}); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// List implements group.Index: the union of the deal's shards and its legacy document,
// read concurrently. A group in both is listed once.
func (x *Index) List(ctx context.Context, dealID string) ([]group.IndexEntry, error) {
	keys := make([]string, 0, x.cfg.Shards+1)
	if hasLegacy(dealID) {
		keys = append(keys, legacyIndexKey(dealID))
	}
	for i := range x.cfg.Shards {
		keys = append(keys, shardKey(dealID, i))
	}
	docs := make([]indexDoc, len(keys))
	errs := make([]error, len(keys))
	sem := make(chan struct{}, readParallelism)
	var wg sync.WaitGroup
	for i, k := range keys {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := x.s.Get(ctx, k, &docs[i]); err != nil && !errors.Is(err, daprstate.ErrNotFound) {
				errs[i] = err
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("list the groups of deal %s: %w", dealID, err)
	}
	var out []group.IndexEntry
	seen := map[string]bool{}
	for _, d := range docs {
		for _, e := range d.Groups {
			if !seen[e.GroupID] {
				seen[e.GroupID] = true
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func (x *Index) do(ctx context.Context, key string, op indexOp) error {
	err, derr := x.batcher.Do(ctx, key, op)
	if derr != nil {
		return fmt.Errorf("deal index %s: %w", key, derr)
	}
	return err
}

// flush writes one document for a batch of operations in one read-modify-CAS (retried on
// ETag conflicts by Mutate, each time on a fresh read); every operation gets its outcome.
func (x *Index) flush(ctx context.Context, key string, ops []indexOp) []error {
	cutoff := x.cfg.Now().Add(-(x.cfg.Retention + x.cfg.PruneMargin))
	_, err := daprstate.Mutate(ctx, x.s, key, casAttempts, func(d *indexDoc, found bool) error {
		return applyIndexOps(d, found, ops, cutoff)
	})
	if err != nil {
		err = fmt.Errorf("deal index %s: %w", key, err)
	}
	out := make([]error, len(ops))
	for i := range out {
		out[i] = err
	}
	return out
}

// applyIndexOps applies ops to d in order; when that changes d, it also drops the entries
// whose deadline is before cutoff. An entry added past cutoff would be dropped at once, so
// it changes nothing. It returns daprstate.ErrNoChange when d need not be written and
// daprstate.ErrDelete when the written document would be empty.
func applyIndexOps(d *indexDoc, found bool, ops []indexOp, cutoff time.Time) error {
	listed := make(map[string]bool, len(d.Groups))
	for _, e := range d.Groups {
		listed[e.GroupID] = true
	}
	changed := false
	for _, op := range ops {
		if e := op.add; e.GroupID != "" && !listed[e.GroupID] && !e.ExpiresAt.Before(cutoff) {
			d.Groups = append(d.Groups, e)
			listed[e.GroupID] = true
			changed = true
		}
		for _, id := range op.remove {
			if listed[id] {
				d.Groups = slices.DeleteFunc(d.Groups, func(e group.IndexEntry) bool { return e.GroupID == id })
				delete(listed, id)
				changed = true
			}
		}
	}
	if !changed {
		return daprstate.ErrNoChange
	}
	d.Groups = slices.DeleteFunc(d.Groups, func(e group.IndexEntry) bool { return e.ExpiresAt.Before(cutoff) })
	if len(d.Groups) == 0 {
		if !found {
			return daprstate.ErrNoChange
		}
		return daprstate.ErrDelete
	}
	return nil
}
