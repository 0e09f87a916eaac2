// Package httpapi exposes the payment provider to other apps (through Dapr service invocation).
//
// A declined charge is a 200 with status "declined", not an error: Dapr's circuit breaker counts
// every non-2xx answer as a failure. Non-2xx answers are reserved for bad requests (400), a
// refund without a succeeded charge (409), unknown records (404) and injected or real outages (503/500).
package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/payment/internal/payment"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Routes mounts the payment routes on r.
func Routes(r chi.Router, svc *payment.Service) {
	r.Post("/charges", func(w http.ResponseWriter, req *http.Request) {
		var in payment.ChargeRequest
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		c, err := svc.Charge(req.Context(), in)
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, c)
	})
	r.Get("/charges/{orderID}", func(w http.ResponseWriter, req *http.Request) {
		c, err := svc.GetCharge(req.Context(), chi.URLParam(req, "orderID"))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, c)
	})
	r.Post("/refunds", func(w http.ResponseWriter, req *http.Request) {
		var in payment.RefundRequest
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		rf, err := svc.Refund(req.Context(), in)
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, rf)
	})
	r.Get("/refunds/{orderID}", func(w http.ResponseWriter, req *http.Request) {
		rf, err := svc.GetRefund(req.Context(), chi.URLParam(req, "orderID"))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, rf)
	})
	// Everything recorded for an order, for the order app's reconciler: 200 with empty lists
	// when there is nothing (a 404 would count against the payment breaker).
	r.Get("/ledger/{orderID}", func(w http.ResponseWriter, req *http.Request) {
		l, err := svc.Ledger(req.Context(), chi.URLParam(req, "orderID"))
		if err != nil {
			problem.Write(w, req, err)
			return
		}
		httpjson.Write(w, http.StatusOK, l)
	})
}
