// Package httpapi exposes the inventory service to other apps (through Dapr invocation).
//
// Business outcomes of a reservation (reserved, sold out) are 200 answers: Dapr's circuit
// breaker on inventory invocation counts every non-2xx answer as a failure, and a flash sale
// answers "sold out" far more often than anything else.
package httpapi

import (
	"context"
	"net/http"
	"time"

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

func view(l stock.Levels) StockView {
	return StockView{DealID: l.DealID, Stock: l.Stock, Available: l.Available, Reserved: l.Reserved, Sold: l.Sold}
}

// ReserveRequest is the body of POST /reservations.
type ReserveRequest struct {
	DealID   string    `json:"deal_id"`
	OrderID  string    `json:"order_id"`
	Quantity int       `json:"quantity"`
	Until    time.Time `json:"until"`
}

// ReserveResponse answers POST /reservations. Outcome is "reserved" or "sold_out"; State is
// the order's hold state ("reserved", or for a replay whatever the hold is now), empty when
// sold out.
type ReserveResponse struct {
	Outcome string `json:"outcome"`
	State   string `json:"state"`
}

// HoldRequest is the body of the commit and release calls.
type HoldRequest struct {
	DealID string `json:"deal_id"`
}

// HoldResponse answers commit ("committed") and release ("released" or "absent").
type HoldResponse struct {
	State string `json:"state"`
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
		l, err := svc.Create(req.Context(), chi.URLParam(req, "dealID"), in.Stock)
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, view(l))
	})
	r.Get("/stock/{dealID}", func(w http.ResponseWriter, req *http.Request) {
		l, err := svc.Levels(req.Context(), chi.URLParam(req, "dealID"))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, view(l))
	})
	r.Post("/reservations", func(w http.ResponseWriter, req *http.Request) {
		var in ReserveRequest
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		res, err := svc.Reserve(req.Context(), in.DealID, in.OrderID, in.Quantity, in.Until)
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, ReserveResponse{Outcome: string(res.Outcome), State: string(res.State)})
	})
	r.Post("/reservations/{orderID}/commit", holdHandler(svc.Commit))
	r.Post("/reservations/{orderID}/release", holdHandler(svc.Release))
	holdsRoutes(r, svc)
}

func holdHandler(do func(ctx context.Context, dealID, orderID string) (stock.HoldState, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		var in HoldRequest
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		state, err := do(req.Context(), in.DealID, chi.URLParam(req, "orderID"))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, HoldResponse{State: string(state)})
	}
}
