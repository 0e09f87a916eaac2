package httpapi

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// HoldsView answers GET /deals/{dealID}/holds: every bucket of the deal with its counters and
// the holds they account for, for the order app's reconciler. Apps own their keys, so the
// reconciler reads inventory's buckets through this route, never from the store.
type HoldsView struct {
	DealID  string       `json:"deal_id"`
	Stock   int          `json:"stock"`
	Buckets []BucketView `json:"buckets"`
}

// BucketView is one bucket: counters (Sold includes Archived, the units of committed holds
// that left the bucket's recent-ops window) and holds by order id: every reserved hold, and the
// committed and released ones (release tombstones included) still in the window.
type BucketView struct {
	Bucket    int                 `json:"bucket"`
	Stock     int                 `json:"stock"`
	Available int                 `json:"available"`
	Reserved  int                 `json:"reserved"`
	Sold      int                 `json:"sold"`
	Archived  int                 `json:"archived"`
	Holds     map[string]HoldView `json:"holds"`
}

// HoldView is one order's hold in a bucket; At is its last transition.
type HoldView struct {
	Qty   int       `json:"qty"`
	Until time.Time `json:"until"`
	State string    `json:"state"`
	At    time.Time `json:"at"`
}

func holdsView(dealID string, buckets []stock.Bucket) HoldsView {
	v := HoldsView{DealID: dealID, Buckets: make([]BucketView, 0, len(buckets))}
	for _, b := range buckets {
		bv := BucketView{Bucket: b.Bucket, Stock: b.Stock, Available: b.Available, Reserved: b.Reserved,
			Sold: b.Sold, Archived: b.Archived, Holds: make(map[string]HoldView, len(b.Holds))}
		for id, h := range b.Holds {
			bv.Holds[id] = HoldView{Qty: h.Qty, Until: h.Until, State: string(h.State), At: h.At}
		}
		v.Stock += b.Stock
		v.Buckets = append(v.Buckets, bv)
	}
	return v
}

// holdsRoutes mounts the read-only audit route.
func holdsRoutes(r chi.Router, svc *stock.Service) {
	r.Get("/deals/{dealID}/holds", func(w http.ResponseWriter, req *http.Request) {
		dealID := chi.URLParam(req, "dealID")
		buckets, err := svc.Buckets(req.Context(), dealID)
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, holdsView(dealID, buckets))
	})
}
