// Package httpapi exposes the inventory service to other apps (through Dapr invocation).
package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// StockView is the wire form of a deal's stock.
type StockView struct {
	DealID    string `json:"deal_id"`
	Stock     int    `json:"stock"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
	Sold      int    `json:"sold"`
}

func view(r stock.Record) StockView {
	return StockView{DealID: r.DealID, Stock: r.Stock, Available: r.Available, Reserved: r.Reserved, Sold: r.Sold}
}

// Routes mounts the inventory routes on r.
func Routes(r chi.Router, svc *stock.Service) {
	r.Put("/stock/{dealID}", func(w http.ResponseWriter, req *http.Request) {
		var in struct {
			Stock int `json:"stock"`
		}
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		rec, err := svc.Create(req.Context(), chi.URLParam(req, "dealID"), in.Stock)
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, view(rec))
	})
	r.Get("/stock/{dealID}", func(w http.ResponseWriter, req *http.Request) {
		rec, err := svc.Get(req.Context(), chi.URLParam(req, "dealID"))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, view(rec))
	})
}
