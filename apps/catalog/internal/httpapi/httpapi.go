// Package httpapi exposes the catalog to the gateway and other apps (through Dapr invocation).
// Authorization (admin-only writes) is enforced here from the identity the gateway forwards,
// as well as at the gateway.
package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/catalog/internal/catalog"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Routes mounts the catalog routes on r.
func Routes(r chi.Router, svc *catalog.Service) {
	r.With(identity.RequireAdmin).Post("/products", func(w http.ResponseWriter, req *http.Request) {
		var in catalog.NewProduct
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		p, err := svc.CreateProduct(req.Context(), in)
		reply(w, req, http.StatusCreated, p, err)
	})
	r.Get("/products/{id}", func(w http.ResponseWriter, req *http.Request) {
		p, err := svc.Product(req.Context(), chi.URLParam(req, "id"))
		reply(w, req, http.StatusOK, p, err)
	})
	r.With(identity.RequireAdmin).Post("/deals", func(w http.ResponseWriter, req *http.Request) {
		var in catalog.NewDeal
		if err := httpjson.Decode(w, req, &in); err != nil {
			problem.Write(w, req, err)
			return
		}
		d, err := svc.CreateDeal(req.Context(), in)
		reply(w, req, http.StatusCreated, d, err)
	})
	r.Get("/deals/{id}", func(w http.ResponseWriter, req *http.Request) {
		d, err := svc.Deal(req.Context(), chi.URLParam(req, "id"))
		reply(w, req, http.StatusOK, d, err)
	})
	// Deal without live stock, for other apps (orders read price, window and limits).
	r.Get("/internal/deals/{id}", func(w http.ResponseWriter, req *http.Request) {
		d, err := svc.DealInfo(req.Context(), chi.URLParam(req, "id"))
		reply(w, req, http.StatusOK, d, err)
	})
	// Every product and deal id, for the gateway's existence filter (catalog.KnownIDs). Like
	// /internal/deals/{id} it is for other apps, not public (the gateway routes no /internal).
	r.Get("/internal/ids", func(w http.ResponseWriter, req *http.Request) {
		ids, err := svc.KnownIDs(req.Context())
		reply(w, req, http.StatusOK, ids, err)
	})
	r.Get("/deals", func(w http.ResponseWriter, req *http.Request) {
		active := false
		switch v := req.URL.Query().Get("active"); v {
		case "", "false":
		case "true":
			active = true
		default:
			problem.Write(w, req, problem.Invalid(problem.FieldError{Field: "active", Reason: `must be "true" or "false"`}))
			return
		}
		deals, err := svc.Deals(req.Context(), active)
		reply(w, req, http.StatusOK, map[string]any{"items": deals}, err)
	})
}

func reply(w http.ResponseWriter, r *http.Request, status int, v any, err error) {
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpjson.Write(w, status, v)
}
