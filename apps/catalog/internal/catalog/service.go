package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/groupbuy/groupbuy/pkg/events"
)

// Service implements the catalog use cases.
type Service struct {
	store   Store
	stock   Stock
	ids     IDs
	changes Changes
	log     *slog.Logger
	now     func() time.Time
}

// NewService wires the service. changes may be nil (nothing is announced); log may be nil
// (nothing is logged).
func NewService(store Store, stock Stock, ids IDs, changes Changes, log *slog.Logger) *Service {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, stock: stock, ids: ids, changes: changes, log: log, now: time.Now}
}

// changed announces a change that is already stored. A lost announcement does not undo or
// fail the change: the caller's write succeeded, so it is logged and the request goes on
// (Changes retries within its own bound; the gateway's periodic rebuild is the safety net).
func (s *Service) changed(ctx context.Context, kind, id string) {
	if s.changes == nil {
		return
	}
	if err := s.changes.Changed(ctx, kind, id); err != nil {
		s.log.WarnContext(ctx, "catalog_change_unpublished",
			slog.String("kind", kind), slog.String("id", id), slog.String("error", err.Error()))
	}
}

// CreateProduct validates and stores a product.
func (s *Service) CreateProduct(ctx context.Context, in NewProduct) (Product, error) {
	if err := in.Validate(); err != nil {
		return Product{}, err
	}
	p := Product{
		ID:          s.ids.NextString(),
		Name:        strings.TrimSpace(in.Name),
		Description: in.Description,
		PriceCents:  in.PriceCents,
		CreatedAt:   s.now().UTC().Truncate(time.Millisecond),
	}
	if err := s.store.CreateProduct(ctx, p); err != nil {
		return Product{}, fmt.Errorf("create product: %w", err)
	}
	s.changed(ctx, events.KindProduct, p.ID)
	return p, nil
}

// Product returns a product.
func (s *Service) Product(ctx context.Context, id string) (Product, error) {
	return s.store.Product(ctx, id)
}

// CreateDeal validates the deal, creates its stock record in inventory, then stores it. The
// stock record comes first: a deal that is visible always has stock behind it; a crash in
// between leaves only an unreferenced stock record.
func (s *Service) CreateDeal(ctx context.Context, in NewDeal) (Deal, error) {
	if err := in.Validate(s.now()); err != nil {
		return Deal{}, err
	}
	if _, err := s.store.Product(ctx, in.ProductID); err != nil {
		return Deal{}, err
	}
	d := Deal{
		ID:           s.ids.NextString(),
		ProductID:    in.ProductID,
		Kind:         in.Kind,
		PriceCents:   in.PriceCents,
		Stock:        in.Stock,
		StartsAt:     in.StartsAt.UTC(),
		EndsAt:       in.EndsAt.UTC(),
		PerUserLimit: in.PerUserLimit,
		CreatedAt:    s.now().UTC().Truncate(time.Millisecond),
	}
	if in.GroupSize != nil {
		d.GroupSize = *in.GroupSize
	}
	if in.GroupTTLSeconds != nil {
		d.GroupTTLSeconds = *in.GroupTTLSeconds
	}
	if err := s.stock.Create(ctx, d.ID, d.Stock); err != nil {
		return Deal{}, fmt.Errorf("create stock of deal %s: %w", d.ID, err)
	}
	if err := s.store.CreateDeal(ctx, d); err != nil {
		return Deal{}, fmt.Errorf("create deal: %w", err)
	}
	s.changed(ctx, events.KindDeal, d.ID)
	return d, nil
}

// DealWithStock is a deal and its live stock.
type DealWithStock struct {
	Deal
	Stock Levels `json:"stock"`
}

// Deal returns a deal with its live stock read from inventory, stamped with when it was read.
func (s *Service) Deal(ctx context.Context, id string) (DealWithStock, error) {
	d, err := s.store.Deal(ctx, id)
	if err != nil {
		return DealWithStock{}, err
	}
	lv, err := s.stock.Levels(ctx, id)
	if err != nil {
		return DealWithStock{}, fmt.Errorf("stock of deal %s: %w", id, err)
	}
	lv.AsOf = s.now().UTC().Truncate(time.Millisecond)
	return DealWithStock{Deal: d, Stock: lv}, nil
}

// DealInfo returns a deal without stock (for other apps; deals are immutable).
func (s *Service) DealInfo(ctx context.Context, id string) (Deal, error) {
	return s.store.Deal(ctx, id)
}

// Deals lists deals, newest first; activeOnly keeps those whose window contains now.
func (s *Service) Deals(ctx context.Context, activeOnly bool) ([]Deal, error) {
	all, err := s.store.Deals(ctx)
	if err != nil {
		return nil, err
	}
	now := s.now()
	out := make([]Deal, 0, len(all))
	for _, d := range all {
		if !activeOnly || d.ActiveAt(now) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out, nil
}

// KnownIDs lists every product and deal id (see KnownIDs); the lists are never nil.
func (s *Service) KnownIDs(ctx context.Context) (KnownIDs, error) {
	k, err := s.store.KnownIDs(ctx)
	if err != nil {
		return KnownIDs{}, fmt.Errorf("known ids: %w", err)
	}
	if k.Products == nil {
		k.Products = []string{}
	}
	if k.Deals == nil {
		k.Deals = []string{}
	}
	return k, nil
}
