// Package catalog owns products and deals. Deals are immutable once created (price, stock,
// window), which lets other apps and this one cache them freely; live stock belongs to the
// inventory app and is read from it.
package catalog

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Errors of the catalog domain.
var (
	ErrProductNotFound = problem.New(problem.CodeNotFound, "product not found")
	ErrDealNotFound    = problem.New(problem.CodeNotFound, "deal not found")
)

// Deal kinds.
const (
	KindFlash = "flash"
	KindGroup = "group"
)

// Limits on input.
const (
	MaxNameLen        = 200
	MaxDescriptionLen = 4000
	MaxPriceCents     = 100_000_000 // one million in currency units
	MaxStock          = 1_000_000
	MaxPerUserLimit   = 100
	MinGroupSize      = 2
	MaxGroupSize      = 100
	MinGroupTTL       = 5 * time.Second
	MaxGroupTTL       = 7 * 24 * time.Hour
	MaxDealWindow     = 366 * 24 * time.Hour
)

// Product is something that can be sold.
type Product struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description"`
	PriceCents  int64     `json:"price_cents"`
	CreatedAt   time.Time `json:"created_at"`
}

// NewProduct is the input of CreateProduct.
type NewProduct struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	PriceCents  int64  `json:"price_cents"`
}

// Validate checks the input.
func (p NewProduct) Validate() error {
	var f []problem.FieldError
	name := strings.TrimSpace(p.Name)
	if name == "" {
		f = append(f, problem.FieldError{Field: "name", Reason: "is required"})
	} else if utf8.RuneCountInString(name) > MaxNameLen {
		f = append(f, problem.FieldError{Field: "name", Reason: fmt.Sprintf("must be at most %d characters", MaxNameLen)})
	}
	if utf8.RuneCountInString(p.Description) > MaxDescriptionLen {
		f = append(f, problem.FieldError{Field: "description", Reason: fmt.Sprintf("must be at most %d characters", MaxDescriptionLen)})
	}
	if p.PriceCents <= 0 || p.PriceCents > MaxPriceCents {
		f = append(f, problem.FieldError{Field: "price_cents", Reason: fmt.Sprintf("must be between 1 and %d", MaxPriceCents)})
	}
	if len(f) > 0 {
		return problem.Invalid(f...)
	}
	return nil
}

// Deal sells a product at a deal price inside a window.
type Deal struct {
	ID              string    `json:"id"`
	ProductID       string    `json:"product_id"`
	Kind            string    `json:"kind"`
	PriceCents      int64     `json:"price_cents"`
	Stock           int       `json:"stock"`
	StartsAt        time.Time `json:"starts_at"`
	EndsAt          time.Time `json:"ends_at"`
	PerUserLimit    int       `json:"per_user_limit"`
	GroupSize       int       `json:"group_size,omitempty"`
	GroupTTLSeconds int       `json:"group_ttl_seconds,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
}

// ActiveAt reports whether the deal's window contains t.
func (d Deal) ActiveAt(t time.Time) bool { return !t.Before(d.StartsAt) && t.Before(d.EndsAt) }

// NewDeal is the input of CreateDeal.
type NewDeal struct {
	ProductID       string    `json:"product_id"`
	Kind            string    `json:"kind"`
	PriceCents      int64     `json:"price_cents"`
	Stock           int       `json:"stock"`
	StartsAt        time.Time `json:"starts_at"`
	EndsAt          time.Time `json:"ends_at"`
	PerUserLimit    int       `json:"per_user_limit"`
	GroupSize       *int      `json:"group_size,omitempty"`
	GroupTTLSeconds *int      `json:"group_ttl_seconds,omitempty"`
}

// Validate checks the input against the rules of DESIGN.md §4.
func (d NewDeal) Validate(now time.Time) error {
	var f []problem.FieldError
	add := func(field, reason string) { f = append(f, problem.FieldError{Field: field, Reason: reason}) }
	if d.ProductID == "" {
		add("product_id", "is required")
	}
	switch d.Kind {
	case KindFlash:
		if d.GroupSize != nil {
			add("group_size", "is only allowed on group deals")
		}
		if d.GroupTTLSeconds != nil {
			add("group_ttl_seconds", "is only allowed on group deals")
		}
	case KindGroup:
		if d.GroupSize == nil || *d.GroupSize < MinGroupSize || *d.GroupSize > MaxGroupSize {
			add("group_size", fmt.Sprintf("is required on group deals, between %d and %d", MinGroupSize, MaxGroupSize))
		}
		minTTL, maxTTL := int(MinGroupTTL/time.Second), int(MaxGroupTTL/time.Second)
		if d.GroupTTLSeconds == nil || *d.GroupTTLSeconds < minTTL || *d.GroupTTLSeconds > maxTTL {
			add("group_ttl_seconds", fmt.Sprintf("is required on group deals, between %d and %d", minTTL, maxTTL))
		}
	default:
		add("kind", `must be "flash" or "group"`)
	}
	if d.PriceCents <= 0 || d.PriceCents > MaxPriceCents {
		add("price_cents", fmt.Sprintf("must be between 1 and %d", MaxPriceCents))
	}
	if d.Stock < 1 || d.Stock > MaxStock {
		add("stock", fmt.Sprintf("must be between 1 and %d", MaxStock))
	}
	switch {
	case d.StartsAt.IsZero():
		add("starts_at", "is required (RFC 3339)")
	case d.EndsAt.IsZero():
		add("ends_at", "is required (RFC 3339)")
	case !d.EndsAt.After(d.StartsAt):
		add("ends_at", "must be after starts_at")
	case !d.EndsAt.After(now):
		add("ends_at", "must be in the future")
	case d.EndsAt.Sub(d.StartsAt) > MaxDealWindow:
		add("ends_at", fmt.Sprintf("the window must not exceed %d days", int(MaxDealWindow/(24*time.Hour))))
	}
	if d.PerUserLimit < 1 || d.PerUserLimit > MaxPerUserLimit {
		add("per_user_limit", fmt.Sprintf("must be between 1 and %d", MaxPerUserLimit))
	}
	if d.Kind == KindGroup && d.PerUserLimit > 1 {
		add("per_user_limit", "must be 1 on group deals (one seat per user)")
	}
	if len(f) > 0 {
		return problem.Invalid(f...)
	}
	return nil
}

// Store keeps products and deals.
type Store interface {
	CreateProduct(ctx context.Context, p Product) error
	Product(ctx context.Context, id string) (Product, error)
	CreateDeal(ctx context.Context, d Deal) error
	Deal(ctx context.Context, id string) (Deal, error)
	Deals(ctx context.Context) ([]Deal, error)
	KnownIDs(ctx context.Context) (KnownIDs, error)
}

// KnownIDs lists the id of every product and deal, for the gateway's existence filter (a
// Bloom filter in front of its read cache, apps/gateway/internal/readcache).
//
// Products lists every product whose Snowflake time (pkg/ids.Time) is at or after
// ProductsCompleteFrom; older products may be missing (they were created before the catalog
// kept a product index). The zero time means the list is complete. Deals is always complete.
type KnownIDs struct {
	Products             []string  `json:"products"`
	Deals                []string  `json:"deals"`
	ProductsCompleteFrom time.Time `json:"products_complete_from"`
}

// Changes announces that a product or deal was created or changed (kind is events.KindProduct
// or events.KindDeal), so that the gateway replicas refresh their cached copies. It is called
// after the store write; an error means the announcement may be lost, never that the change
// is (the gateway rebuilds its cache periodically as a safety net).
type Changes interface {
	Changed(ctx context.Context, kind, id string) error
}

// Stock is the inventory app as seen from the catalog.
type Stock interface {
	// Create makes the stock record of a deal; it is idempotent per deal id.
	Create(ctx context.Context, dealID string, qty int) error
	Levels(ctx context.Context, dealID string) (Levels, error)
}

// Levels is the live stock of a deal.
type Levels struct {
	Total     int `json:"total"`
	Available int `json:"available"`
	Reserved  int `json:"reserved"`
	Sold      int `json:"sold"`
	// AsOf is when the levels were read from inventory: the catalog's clock right after the
	// read returned (UTC, milliseconds), so a cache in front can tell how stale they are.
	AsOf time.Time `json:"as_of"`
}

// IDs issues identifiers.
type IDs interface{ NextString() string }
