// Package httpapi exposes the order app to the gateway (user routes, identity from the
// forwarded headers) and to its sidecar (the cron binding's expiry tick).
package httpapi

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// MaxPage is the largest page of GET /me/orders a client may ask for.
const MaxPage = 100

// pageParams reads ?before (an order id, the cursor) and ?limit (1..MaxPage, default MaxPage).
func pageParams(r *http.Request) (before string, limit int, err error) {
	q := r.URL.Query()
	before, limit = q.Get("before"), MaxPage
	var fields []problem.FieldError
	if before != "" {
		if _, _, ok := ids.Parse(before); !ok {
			fields = append(fields, problem.FieldError{Field: "before", Reason: "must be an order id"})
		}
	}
	if v := q.Get("limit"); v != "" {
		n, perr := strconv.Atoi(v)
		if perr != nil || n < 1 || n > MaxPage {
			fields = append(fields, problem.FieldError{Field: "limit", Reason: fmt.Sprintf("must be between 1 and %d", MaxPage)})
		}
		limit = n
	}
	if len(fields) > 0 {
		return "", 0, problem.Invalid(fields...)
	}
	return before, limit, nil
}

// View is the public form of an order (DESIGN.md §4).
type View struct {
	ID             string    `json:"id"`
	UserID         string    `json:"user_id"`
	DealID         string    `json:"deal_id"`
	GroupID        string    `json:"group_id,omitempty"`
	Quantity       int       `json:"quantity"`
	UnitPriceCents int64     `json:"unit_price_cents"`
	TotalCents     int64     `json:"total_cents"`
	Status         string    `json:"status"`
	PayBy          time.Time `json:"pay_by"`
	CreatedAt      time.Time `json:"created_at"`
}

// ViewOf renders an order.
func ViewOf(o order.Order) View {
	return View{ID: o.ID, UserID: o.UserID, DealID: o.DealID, GroupID: o.GroupID, Quantity: o.Quantity,
		UnitPriceCents: o.UnitPriceCents, TotalCents: o.TotalCents, Status: string(o.Status), PayBy: o.PayBy, CreatedAt: o.CreatedAt}
}

// Routes mounts the order routes. binding is the cron binding's name (Dapr POSTs to /<name>).
func Routes(r chi.Router, svc *order.Service, binding string, log *slog.Logger) {
	render := order.ReplyFor(func(o order.Order) ([]byte, error) { return json.Marshal(ViewOf(o)) })

	r.Group(func(r chi.Router) {
		r.Use(identity.Require)
		r.Post("/deals/{id}/orders", func(w http.ResponseWriter, req *http.Request) {
			var in struct {
				Quantity int `json:"quantity"`
			}
			if err := httpjson.Decode(w, req, &in); err != nil {
				problem.Write(w, req, err)
				return
			}
			u, _ := identity.FromContext(req.Context())
			reply, err := svc.Place(req.Context(), u, order.PlaceRequest{
				DealID:         chi.URLParam(req, "id"),
				Quantity:       in.Quantity,
				IdempotencyKey: req.Header.Get(idempotency.Header),
			}, render)
			if err != nil {
				problem.Write(w, req, err)
				return
			}
			idempotency.WriteReply(w, reply.Status, reply.Body)
		})
		r.Post("/orders/{id}/pay", func(w http.ResponseWriter, req *http.Request) {
			var in struct {
				PaymentToken string `json:"payment_token"`
			}
			if err := httpjson.Decode(w, req, &in); err != nil {
				problem.Write(w, req, err)
				return
			}
			u, _ := identity.FromContext(req.Context())
			o, err := svc.Pay(req.Context(), u, chi.URLParam(req, "id"), in.PaymentToken)
			respond(w, req, o, err)
		})
		r.Post("/orders/{id}/cancel", func(w http.ResponseWriter, req *http.Request) {
			var in struct{}
			if err := httpjson.Decode(w, req, &in); err != nil {
				problem.Write(w, req, err)
				return
			}
			u, _ := identity.FromContext(req.Context())
			o, err := svc.Cancel(req.Context(), u, chi.URLParam(req, "id"))
			respond(w, req, o, err)
		})
		r.Get("/orders/{id}", func(w http.ResponseWriter, req *http.Request) {
			u, _ := identity.FromContext(req.Context())
			o, err := svc.Get(req.Context(), u, chi.URLParam(req, "id"))
			respond(w, req, o, err)
		})
		// GET /me/orders[?before=<order id>][&limit=N]: a page of the caller's orders, newest
		// first; "next" is the cursor of the page after it (absent on the last page).
		r.Get("/me/orders", func(w http.ResponseWriter, req *http.Request) {
			u, _ := identity.FromContext(req.Context())
			before, limit, err := pageParams(req)
			if err != nil {
				problem.Write(w, req, err)
				return
			}
			list, err := svc.List(req.Context(), u, before, limit)
			if err != nil {
				problem.Write(w, req, err)
				return
			}
			items := make([]View, 0, len(list))
			for _, o := range list {
				items = append(items, ViewOf(o))
			}
			page := map[string]any{"items": items}
			if limit > 0 && len(list) == limit {
				page["next"] = list[len(list)-1].ID
			}
			httpjson.Write(w, http.StatusOK, page)
		})
	})

	// The cron input binding: every replica's sidecar fires it; Sweep is safe to overlap.
	r.Post("/"+binding, func(w http.ResponseWriter, req *http.Request) {
		st, err := svc.Sweep(req.Context())
		if err != nil {
			log.ErrorContext(req.Context(), "expiry_sweep_failed", slog.String("error", err.Error()))
			problem.Write(w, req, err)
			return
		}
		if st.Examined > 0 {
			log.InfoContext(req.Context(), "expiry_sweep", slog.Int("examined", st.Examined), slog.Int("cancelled", st.Cancelled),
				slog.Int("completed", st.Completed), slog.Int("cleaned", st.Cleaned), slog.Int("failed", st.Failed))
		}
		httpjson.Write(w, http.StatusOK, st)
	})
}

func respond(w http.ResponseWriter, r *http.Request, o order.Order, err error) {
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	httpjson.Write(w, http.StatusOK, ViewOf(o))
}
