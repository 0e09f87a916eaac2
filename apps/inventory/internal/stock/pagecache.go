package stock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
)

// pageCache is a replica's copy of the pages one bucket lists, with an index from order id
// to page. Pages are immutable, so each is read once. mu is held from syncing the cache to a
// bucket read until the write of that bucket is done: the index then describes exactly the
// pages the batch's bucket lists (one flusher per bucket makes it uncontended).
type pageCache struct {
	mu    sync.Mutex
	pages map[string]map[string]Hold // page key → holds
	where map[string]string          // order id → page key
}

func (s *Service) pageCache(key bucketKey) *pageCache {
	s.mu.Lock()
	defer s.mu.Unlock()
	pc := s.pages[key]
	if pc == nil {
		pc = &pageCache{pages: map[string]map[string]Hold{}, where: map[string]string{}}
		s.pages[key] = pc
	}
	return pc
}

// sync makes the cache hold exactly the pages refs lists: unlisted pages go first, then the
// missing ones are read (ErrNotFound: the bucket read is older than a write that deleted a
// page it lists).
func (pc *pageCache) sync(ctx context.Context, store Store, key bucketKey, refs []PageRef) error {
	if len(pc.pages) > 0 {
		listed := make(map[string]bool, len(refs))
		for _, r := range refs {
			listed[r.Key] = true
		}
		for k := range pc.pages {
			if !listed[k] {
				pc.remove(k)
			}
		}
	}
	for _, r := range refs {
		if _, ok := pc.pages[r.Key]; ok {
			continue
		}
		p, err := store.Page(ctx, key.deal, key.bucket, r.Key)
		if err != nil {
			return fmt.Errorf("stock %s/%d page %s: %w", key.deal, key.bucket, r.Key, err)
		}
		pc.add(r.Key, p.Holds)
	}
	return nil
}

func (pc *pageCache) add(key string, holds map[string]Hold) {
	pc.pages[key] = holds
	for id := range holds {
		pc.where[id] = key
	}
}

func (pc *pageCache) remove(key string) {
	for id := range pc.pages[key] {
		if pc.where[id] == key {
			delete(pc.where, id)
		}
	}
	delete(pc.pages, key)
}

func (pc *pageCache) holds(key string) map[string]Hold { return pc.pages[key] }

func (pc *pageCache) find(orderID string) (string, bool) {
	k, ok := pc.where[orderID]
	return k, ok
}

// written updates the cache after a bucket write that created and dropped pages. Dropped
// pages go before created ones come, so an order moved by a rewrite is indexed to its new page.
func (pc *pageCache) written(ch PageChanges) {
	for _, k := range ch.Drop {
		pc.remove(k)
	}
	for _, p := range ch.Create {
		pc.add(p.Key, p.Holds)
	}
}

// newPageKey names a new page: random, so attempts racing to page the same bucket never
// share a key.
func newPageKey() string { return "p" + strconv.FormatUint(rand.Uint64(), 36) }

func (s *Service) createPages(ctx context.Context, pages []Page) error {
	for _, p := range pages {
		if err := s.store.CreatePage(ctx, p); err != nil {
			return fmt.Errorf("stock %s/%d page %s: %w", p.DealID, p.Bucket, p.Key, err)
		}
	}
	return nil
}

func pageKeys(pages []Page) []string {
	keys := make([]string, len(pages))
	for i, p := range pages {
		keys[i] = p.Key
	}
	return keys
}

// deletePages removes pages no bucket lists. It is best effort: a page left behind (the
// store failed, or the replica stopped first) is never read again, only stored.
func (s *Service) deletePages(ctx context.Context, key bucketKey, keys []string) {
	for _, k := range keys {
		_ = s.store.DeletePage(context.WithoutCancel(ctx), key.deal, key.bucket, k)
	}
}
