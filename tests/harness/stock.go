package harness

import (
	"context"
	"fmt"
)

// StockHold is one reservation inside a bucket document. A released hold of no units is a
// release tombstone: the order was released before it held anything.
type StockHold struct {
	Qty   int    `json:"qty"`
	State string `json:"state"`
	Page  string `json:"page,omitempty"` // a finished hold's page, whose copy this record overrides
}

func (h StockHold) tombstone() bool { return h.Qty == 0 && h.State == "released" }

// StockBucket is a bucket document of inventory as stored.
type StockBucket struct {
	DealID    string               `json:"deal_id"`
	Bucket    int                  `json:"bucket"`
	Stock     int                  `json:"stock"`
	Available int                  `json:"available"`
	Reserved  int                  `json:"reserved"`
	Sold      int                  `json:"sold"`
	Holds     map[string]StockHold `json:"holds"`
	// Pages lists the pages of reserved holds moved out of the bucket document.
	Pages []struct {
		Key string `json:"k"`
	} `json:"pages"`
}

// StockTotals sums a deal's buckets.
type StockTotals struct {
	Stock, Available, Reserved, Sold int
	Holds                            map[string]StockHold
}

// Stock reads a deal's stock straight from the state store: the meta document
// "stock:<deal>" names the bucket count, each "stock:<deal>:<i>" holds counters and holds,
// and the pages it lists ("stock:<deal>:<i>:<key>") the reserved holds moved out of it.
// It checks every bucket's own invariant on the way.
func (s *Stack) Stock(ctx context.Context, dealID string) (StockTotals, error) {
	var meta struct {
		Stock   int `json:"stock"`
		Buckets int `json:"buckets"`
	}
	found, err := s.State(ctx, "inventory", "stock:"+dealID, &meta)
	if err != nil {
		return StockTotals{}, err
	}
	if !found {
		return StockTotals{}, fmt.Errorf("no stock meta document for deal %s", dealID)
	}
	t := StockTotals{Holds: map[string]StockHold{}}
	for i := range meta.Buckets {
		var b StockBucket
		found, err := s.State(ctx, "inventory", fmt.Sprintf("stock:%s:%d", dealID, i), &b)
		if err != nil {
			return StockTotals{}, err
		}
		if !found {
			return StockTotals{}, fmt.Errorf("deal %s lacks bucket %d", dealID, i)
		}
		if b.Available < 0 || b.Reserved < 0 || b.Sold < 0 || b.Available+b.Reserved+b.Sold != b.Stock {
			return StockTotals{}, fmt.Errorf("deal %s bucket %d breaks its invariant: %+v", dealID, i, b)
		}
		if b.Holds == nil {
			b.Holds = map[string]StockHold{}
		}
		for _, r := range b.Pages {
			var p struct {
				Holds map[string]StockHold `json:"holds"`
			}
			found, err := s.State(ctx, "inventory", fmt.Sprintf("stock:%s:%d:%s", dealID, i, r.Key), &p)
			if err != nil {
				return StockTotals{}, err
			}
			if !found {
				return StockTotals{}, fmt.Errorf("deal %s bucket %d lists page %s, which is not stored", dealID, i, r.Key)
			}
			for id, h := range p.Holds {
				if rec, ok := b.Holds[id]; !ok || rec.Page != r.Key {
					b.Holds[id] = h
				}
			}
		}
		t.Stock += b.Stock
		t.Available += b.Available
		t.Reserved += b.Reserved
		t.Sold += b.Sold
		for id, h := range b.Holds {
			prev, dup := t.Holds[id]
			switch {
			case !dup || prev.tombstone():
				t.Holds[id] = h
			case h.tombstone(): // a tombstone may sit before the order's hold (pruned marks)
			default:
				return StockTotals{}, fmt.Errorf("order %s holds stock in two buckets", id)
			}
		}
	}
	if t.Stock != meta.Stock {
		return StockTotals{}, fmt.Errorf("deal %s: buckets hold %d units, meta says %d", dealID, t.Stock, meta.Stock)
	}
	return t, nil
}
