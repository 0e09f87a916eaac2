package stock

import (
	"cmp"
	"maps"
	"slices"
)

// Pages take reserved holds out of the bucket document, so a bucket stays small however
// many orders of its deal hold stock at once (a flash sale leaves every sold unit reserved
// for a whole pay window).
//
// When more than Paging.Out reserved holds sit in a bucket, they move to a page: a document
// of its own, written once before the bucket write that lists it and never changed after.
// The bucket lists each page by a PageRef counting the page's holds still reserved. A paged
// hold that finishes (commit or release) leaves a record in the bucket naming its page
// (Hold.Page), which overrides the page's copy while the page is listed; such records stay
// out of the recent-ops window's pruning, since dropping one would bring the page's stale
// copy back. A page whose holds have all finished is unlisted, and its records become
// ordinary window records. When more than Paging.FinishedCap records name pages, the page
// with the most of them is rewritten under a new key with only its live holds, and its
// records become ordinary too. A page-out tops up the page paged out last, and takes in
// pages a quarter full or less, while the result fits Max, so pages stay few and full.
//
// So a bucket document holds at most Out reserved holds, FinishedCap records of paged holds,
// its window (Window.Ops records) and one ref of about 60 bytes per page; a page holds at
// most Max holds. Pages are immutable, so every replica caches them by key and reads each
// once.

// PageRef lists one page of a bucket.
// Its JSON names are short: a bucket lists one ref per page, and they are most of what a
// bucket with many reserved holds reads and writes.
type PageRef struct {
	Key   string `json:"k"`
	Holds int    `json:"h"` // holds of the page still reserved (no record in the bucket)
	Units int    `json:"u"` // their units
}

// Page is an immutable document of reserved holds moved out of a bucket.
type Page struct {
	DealID string          `json:"deal_id"`
	Bucket int             `json:"bucket"`
	Key    string          `json:"key"`
	Holds  map[string]Hold `json:"holds"`
}

// Paging tells ApplyPaged how to page a bucket's reserved holds.
type Paging struct {
	// Out is the most reserved holds a bucket keeps in its own document.
	Out int
	// Max is the most holds of one page.
	Max int
	// FinishedCap is the most records of finished paged holds a bucket keeps.
	FinishedCap int
	// Holds returns the holds of a page the bucket lists, as written.
	Holds func(key string) map[string]Hold
	// Find names the listed page holding an order: an index over the pages Holds gives.
	Find func(orderID string) (key string, ok bool)
	// NewKey names a new page; keys are never reused.
	NewKey func() string
}

// PageChanges are the page documents a write of the bucket needs: Create before it, Drop
// (no longer listed) after it.
type PageChanges struct {
	Create []Page
	Drop   []string
}

// pagesUnits sums the units the bucket's pages still hold reserved.
func (b Bucket) pagesUnits() int {
	n := 0
	for _, r := range b.Pages {
		n += r.Units
	}
	return n
}

func (b *Bucket) ref(key string) *PageRef {
	for i := range b.Pages {
		if b.Pages[i].Key == key {
			return &b.Pages[i]
		}
	}
	return nil
}

// find returns the paged hold of an order the bucket document has no record of.
func (pg *Paging) find(b *Bucket, orderID string) (Hold, string, bool) {
	if pg == nil || len(b.Pages) == 0 {
		return Hold{}, "", false
	}
	key, ok := pg.Find(orderID)
	if r := b.ref(key); ok && r != nil && r.Holds > 0 {
		if h, ok := pg.Holds(key)[orderID]; ok {
			return h, key, true
		}
	}
	return Hold{}, "", false
}

// live is what page key still holds reserved: its holds without a record in the bucket.
func (pg *Paging) live(b *Bucket, key string) map[string]Hold {
	out := map[string]Hold{}
	for id, h := range pg.Holds(key) {
		if rec, ok := b.Holds[id]; ok && rec.Page == key {
			continue
		}
		out[id] = h
	}
	return out
}

// unlist removes page key from the bucket's list; the records that named it become ordinary
// window records.
func unlist(b *Bucket, key string, ch *PageChanges) {
	b.Pages = slices.DeleteFunc(b.Pages, func(r PageRef) bool { return r.Key == key })
	for id, h := range b.Holds {
		if h.Page == key {
			h.Page = ""
			b.Holds[id] = h
		}
	}
	ch.Drop = append(ch.Drop, key)
}

// newPage makes a page of holds and its ref.
func (pg *Paging) newPage(b *Bucket, holds map[string]Hold) (Page, PageRef) {
	p := Page{DealID: b.DealID, Bucket: b.Bucket, Key: pg.NewKey(), Holds: holds}
	r := PageRef{Key: p.Key, Holds: len(holds)}
	for _, h := range holds {
		r.Units += h.Qty
	}
	return p, r
}

// maintain unlists finished pages, rewrites pages while too many records name them, and
// pages out the bucket's reserved holds beyond Out.
func (pg *Paging) maintain(b *Bucket) PageChanges {
	var ch PageChanges
	for _, r := range slices.Clone(b.Pages) {
		if r.Holds == 0 {
			unlist(b, r.Key, &ch)
		}
	}

	named := map[string]int{}
	total := 0
	for _, h := range b.Holds {
		if h.Page != "" {
			named[h.Page]++
			total++
		}
	}
	// Past the cap, pages are rewritten down to half of it, so rewrites come in bursts that
	// each clear many records rather than one page per finished hold.
	for total > pg.FinishedCap || (len(ch.Create) > 0 && total > pg.FinishedCap/2) {
		// The page with the most records (ties by key, so every replica picks the same).
		keys := slices.Collect(maps.Keys(named))
		key := slices.MaxFunc(keys, func(x, y string) int { return cmp.Or(cmp.Compare(named[x], named[y]), cmp.Compare(y, x)) })
		live := pg.live(b, key)
		total -= named[key]
		delete(named, key)
		i := slices.IndexFunc(b.Pages, func(r PageRef) bool { return r.Key == key })
		unlist(b, key, &ch)
		p, r := pg.newPage(b, live)
		b.Pages = slices.Insert(b.Pages, i, r)
		ch.Create = append(ch.Create, p)
	}

	out := map[string]Hold{}
	for id, h := range b.Holds {
		if h.State == StateReserved {
			out[id] = h
		}
	}
	if len(out) <= pg.Out {
		return ch
	}
	for id := range out {
		delete(b.Holds, id)
	}
	// Merge pages into this one while it fits, the newest first (the one last paged out is
	// topped up until full) and any page a quarter full or less, so pages stay few and full.
	// Pages this call rewrote are not written yet: they stay as they are.
	listed := slices.Clone(b.Pages)
	for i, r := range slices.Backward(listed) {
		rewritten := slices.ContainsFunc(ch.Create, func(p Page) bool { return p.Key == r.Key })
		if !rewritten && (i == len(listed)-1 || r.Holds <= pg.Max/4) && len(out)+r.Holds <= pg.Max {
			maps.Copy(out, pg.live(b, r.Key))
			unlist(b, r.Key, &ch)
		}
	}
	// A batch larger than Max (Out plus a batch) is split, oldest holds first.
	ids := slices.SortedFunc(maps.Keys(out), func(x, y string) int {
		return cmp.Or(out[x].At.Compare(out[y].At), cmp.Compare(x, y))
	})
	for chunk := range slices.Chunk(ids, max(pg.Max, 1)) {
		holds := make(map[string]Hold, len(chunk))
		for _, id := range chunk {
			holds[id] = out[id]
		}
		p, r := pg.newPage(b, holds)
		b.Pages = append(b.Pages, r)
		ch.Create = append(ch.Create, p)
	}
	return ch
}

// Unpaged is b as if it had never paged: the reserved holds of its pages (holds, by page
// key, as Paging.Holds gives them) back in Holds, and no page named. It keeps Check's
// invariants, and is what audits read.
func Unpaged(b Bucket, holds func(key string) map[string]Hold) Bucket {
	out := b
	out.Pages = nil
	out.Holds = make(map[string]Hold, len(b.Holds))
	for id, h := range b.Holds {
		h.Page = ""
		out.Holds[id] = h
	}
	for _, r := range b.Pages {
		for id, h := range holds(r.Key) {
			if rec, ok := b.Holds[id]; ok && rec.Page == r.Key {
				continue
			}
			out.Holds[id] = h
		}
	}
	return out
}
