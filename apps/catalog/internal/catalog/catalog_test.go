package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

var now = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func intp(v int) *int { return &v }

func validFlash() NewDeal {
	return NewDeal{
		ProductID:    "p1",
		Kind:         KindFlash,
		PriceCents:   999,
		Stock:        10,
		StartsAt:     now.Add(-time.Hour),
		EndsAt:       now.Add(time.Hour),
		PerUserLimit: 2,
	}
}

func validGroup() NewDeal {
	d := validFlash()
	d.Kind = KindGroup
	d.PerUserLimit = 1
	d.GroupSize = intp(3)
	d.GroupTTLSeconds = intp(600)
	return d
}

func fieldNames(err error) []string {
	var perr *problem.Error
	if !errors.As(err, &perr) {
		return nil
	}
	var names []string
	for _, f := range perr.Fields {
		names = append(names, f.Field)
	}
	return names
}

func TestNewDealValidate(t *testing.T) {
	t.Parallel()
	flash := func(change func(d *NewDeal)) NewDeal { d := validFlash(); change(&d); return d }
	group := func(change func(d *NewDeal)) NewDeal { d := validGroup(); change(&d); return d }
	tests := []struct {
		name       string
		in         NewDeal
		wantFields []string // nil: valid
	}{
		{name: "valid flash", in: validFlash()},
		{name: "valid group", in: validGroup()},
		{name: "starting in the future", in: flash(func(d *NewDeal) { d.StartsAt = now.Add(24 * time.Hour); d.EndsAt = now.Add(48 * time.Hour) })},
		{name: "longest window", in: flash(func(d *NewDeal) { d.EndsAt = d.StartsAt.Add(MaxDealWindow) })},
		{name: "group bounds", in: group(func(d *NewDeal) { d.GroupSize = intp(MaxGroupSize); d.GroupTTLSeconds = intp(5) })},

		{name: "missing product", in: flash(func(d *NewDeal) { d.ProductID = "" }), wantFields: []string{"product_id"}},
		{name: "missing kind", in: flash(func(d *NewDeal) { d.Kind = "" }), wantFields: []string{"kind"}},
		{name: "unknown kind", in: flash(func(d *NewDeal) { d.Kind = "auction" }), wantFields: []string{"kind"}},
		{name: "zero price", in: flash(func(d *NewDeal) { d.PriceCents = 0 }), wantFields: []string{"price_cents"}},
		{name: "negative price", in: flash(func(d *NewDeal) { d.PriceCents = -1 }), wantFields: []string{"price_cents"}},
		{name: "price over the limit", in: flash(func(d *NewDeal) { d.PriceCents = MaxPriceCents + 1 }), wantFields: []string{"price_cents"}},
		{name: "zero stock", in: flash(func(d *NewDeal) { d.Stock = 0 }), wantFields: []string{"stock"}},
		{name: "negative stock", in: flash(func(d *NewDeal) { d.Stock = -5 }), wantFields: []string{"stock"}},
		{name: "stock over the limit", in: flash(func(d *NewDeal) { d.Stock = MaxStock + 1 }), wantFields: []string{"stock"}},
		{name: "missing starts_at", in: flash(func(d *NewDeal) { d.StartsAt = time.Time{} }), wantFields: []string{"starts_at"}},
		{name: "missing ends_at", in: flash(func(d *NewDeal) { d.EndsAt = time.Time{} }), wantFields: []string{"ends_at"}},
		{name: "ends_at before starts_at", in: flash(func(d *NewDeal) { d.StartsAt = now.Add(2 * time.Hour); d.EndsAt = now.Add(time.Hour) }), wantFields: []string{"ends_at"}},
		{name: "ends_at equal to starts_at", in: flash(func(d *NewDeal) { d.EndsAt = d.StartsAt }), wantFields: []string{"ends_at"}},
		{name: "ends_at in the past", in: flash(func(d *NewDeal) { d.StartsAt = now.Add(-2 * time.Hour); d.EndsAt = now.Add(-time.Hour) }), wantFields: []string{"ends_at"}},
		{name: "ends_at now", in: flash(func(d *NewDeal) { d.EndsAt = now }), wantFields: []string{"ends_at"}},
		{name: "window too long", in: flash(func(d *NewDeal) { d.EndsAt = d.StartsAt.Add(MaxDealWindow + time.Second) }), wantFields: []string{"ends_at"}},
		{name: "zero per-user limit", in: flash(func(d *NewDeal) { d.PerUserLimit = 0 }), wantFields: []string{"per_user_limit"}},
		{name: "per-user limit over the limit", in: flash(func(d *NewDeal) { d.PerUserLimit = MaxPerUserLimit + 1 }), wantFields: []string{"per_user_limit"}},
		{name: "group size on flash", in: flash(func(d *NewDeal) { d.GroupSize = intp(3) }), wantFields: []string{"group_size"}},
		{name: "group ttl on flash", in: flash(func(d *NewDeal) { d.GroupTTLSeconds = intp(600) }), wantFields: []string{"group_ttl_seconds"}},
		{name: "both group fields on flash", in: flash(func(d *NewDeal) { d.GroupSize = intp(3); d.GroupTTLSeconds = intp(600) }), wantFields: []string{"group_size", "group_ttl_seconds"}},
		{name: "group without size", in: group(func(d *NewDeal) { d.GroupSize = nil }), wantFields: []string{"group_size"}},
		{name: "group without ttl", in: group(func(d *NewDeal) { d.GroupTTLSeconds = nil }), wantFields: []string{"group_ttl_seconds"}},
		{name: "group without either", in: group(func(d *NewDeal) { d.GroupSize = nil; d.GroupTTLSeconds = nil }), wantFields: []string{"group_size", "group_ttl_seconds"}},
		{name: "group of one", in: group(func(d *NewDeal) { d.GroupSize = intp(MinGroupSize - 1) }), wantFields: []string{"group_size"}},
		{name: "group too big", in: group(func(d *NewDeal) { d.GroupSize = intp(MaxGroupSize + 1) }), wantFields: []string{"group_size"}},
		{name: "group ttl too short", in: group(func(d *NewDeal) { d.GroupTTLSeconds = intp(4) }), wantFields: []string{"group_ttl_seconds"}},
		{name: "group ttl too long", in: group(func(d *NewDeal) { d.GroupTTLSeconds = intp(int(MaxGroupTTL/time.Second) + 1) }), wantFields: []string{"group_ttl_seconds"}},
		{name: "group with more than one seat per user", in: group(func(d *NewDeal) { d.PerUserLimit = 2 }), wantFields: []string{"per_user_limit"}},
		{
			name:       "every error is reported at once",
			in:         NewDeal{Kind: KindGroup, PriceCents: -1},
			wantFields: []string{"product_id", "group_size", "group_ttl_seconds", "price_cents", "stock", "starts_at", "per_user_limit"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.in.Validate(now)

			if tt.wantFields == nil {
				if err != nil {
					t.Fatalf("Validate() error = %v, want nil", err)
				}
				return
			}
			if code := problem.CodeOf(err); code != problem.CodeValidation {
				t.Fatalf("Validate() error = %v (code %q), want %q", err, code, problem.CodeValidation)
			}
			if diff := cmp.Diff(fieldNames(err), tt.wantFields); diff != "" {
				t.Errorf("invalid fields mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestNewProductValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         NewProduct
		wantFields []string
	}{
		{name: "valid", in: NewProduct{Name: "Mug", PriceCents: 1200}},
		{name: "longest name and description", in: NewProduct{Name: strings.Repeat("é", MaxNameLen), Description: strings.Repeat("d", MaxDescriptionLen), PriceCents: 1}},
		{name: "blank name", in: NewProduct{Name: "   ", PriceCents: 1}, wantFields: []string{"name"}},
		{name: "name too long", in: NewProduct{Name: strings.Repeat("n", MaxNameLen+1), PriceCents: 1}, wantFields: []string{"name"}},
		{name: "description too long", in: NewProduct{Name: "Mug", Description: strings.Repeat("d", MaxDescriptionLen+1), PriceCents: 1}, wantFields: []string{"description"}},
		{name: "negative price", in: NewProduct{Name: "Mug", PriceCents: -1}, wantFields: []string{"price_cents"}},
		{name: "price over the limit", in: NewProduct{Name: "Mug", PriceCents: MaxPriceCents + 1}, wantFields: []string{"price_cents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.in.Validate()
			if diff := cmp.Diff(fieldNames(err), tt.wantFields); diff != "" {
				t.Errorf("invalid fields mismatch (-got +want):\n%s (err %v)", diff, err)
			}
			if tt.wantFields == nil && err != nil {
				t.Errorf("Validate() error = %v, want nil", err)
			}
		})
	}
}

// journal records the calls of the fakes in order, across fakes.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
}

func (j *journal) list() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}

// fakeStore is an in-memory Store with the not-found errors of the Dapr adapter.
type fakeStore struct {
	log      *journal
	mu       sync.Mutex
	products map[string]Product
	deals    map[string]Deal
	dealErr  error // returned by CreateDeal when set
	prodErr  error // returned by CreateProduct when set
	idsErr   error // returned by KnownIDs when set
	nilIDs   bool  // KnownIDs answers nil lists, as the Dapr store does before any create
}

func newFakeStore(log *journal) *fakeStore {
	return &fakeStore{log: log, products: map[string]Product{}, deals: map[string]Deal{}}
}

func (s *fakeStore) CreateProduct(_ context.Context, p Product) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.add("store.CreateProduct %s", p.ID)
	if s.prodErr != nil {
		return s.prodErr
	}
	s.products[p.ID] = p
	return nil
}

func (s *fakeStore) Product(_ context.Context, id string) (Product, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.products[id]
	if !ok {
		return Product{}, fmt.Errorf("product %s: %w", id, ErrProductNotFound)
	}
	return p, nil
}

func (s *fakeStore) CreateDeal(_ context.Context, d Deal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.add("store.CreateDeal %s", d.ID)
	if s.dealErr != nil {
		return s.dealErr
	}
	s.deals[d.ID] = d
	return nil
}

func (s *fakeStore) Deal(_ context.Context, id string) (Deal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.deals[id]
	if !ok {
		return Deal{}, fmt.Errorf("deal %s: %w", id, ErrDealNotFound)
	}
	return d, nil
}

func (s *fakeStore) Deals(context.Context) ([]Deal, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Deal, 0, len(s.deals))
	for _, d := range s.deals {
		out = append(out, d)
	}
	return out, nil
}

func (s *fakeStore) KnownIDs(context.Context) (KnownIDs, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idsErr != nil {
		return KnownIDs{}, s.idsErr
	}
	k := KnownIDs{ProductsCompleteFrom: now.Add(-time.Hour)}
	if s.nilIDs {
		return k, nil
	}
	for id := range s.products {
		k.Products = append(k.Products, id)
	}
	for id := range s.deals {
		k.Deals = append(k.Deals, id)
	}
	slices.Sort(k.Products)
	slices.Sort(k.Deals)
	return k, nil
}

// fakeChanges records announcements in the journal; the first failures calls fail.
type fakeChanges struct {
	log      *journal
	mu       sync.Mutex
	failures int
}

func (c *fakeChanges) Changed(_ context.Context, kind, id string) error {
	c.log.add("changes.Changed %s %s", kind, id)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures > 0 {
		c.failures--
		return errors.New("broker unreachable")
	}
	return nil
}

// fakeStock is the inventory app as the catalog sees it.
type fakeStock struct {
	log       *journal
	createErr error
	levels    Levels
	onLevels  func() // runs as Levels returns, when set
}

func (s *fakeStock) Create(_ context.Context, dealID string, qty int) error {
	s.log.add("stock.Create %s %d", dealID, qty)
	return s.createErr
}

func (s *fakeStock) Levels(_ context.Context, dealID string) (Levels, error) {
	s.log.add("stock.Levels %s", dealID)
	if s.onLevels != nil {
		s.onLevels()
	}
	return s.levels, nil
}

type fakeIDs struct {
	mu sync.Mutex
	n  int
}

func (f *fakeIDs) NextString() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return strconv.Itoa(f.n)
}

type fixture struct {
	svc     *Service
	log     *journal
	store   *fakeStore
	stock   *fakeStock
	changes *fakeChanges
	logs    *syncBuffer // the service's JSON log
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func newFixture() fixture {
	log := &journal{}
	store := newFakeStore(log)
	store.products["p1"] = Product{ID: "p1", Name: "Mug", PriceCents: 1200}
	stock := &fakeStock{log: log}
	changes := &fakeChanges{log: log}
	logs := &syncBuffer{}
	svc := NewService(store, stock, &fakeIDs{}, changes, slog.New(slog.NewJSONHandler(logs, nil)))
	svc.now = func() time.Time { return now.Add(123456 * time.Nanosecond) }
	return fixture{svc: svc, log: log, store: store, stock: stock, changes: changes, logs: logs}
}

func TestCreateDeal(t *testing.T) {
	t.Parallel()
	local := time.FixedZone("UTC+2", 2*60*60)
	tests := []struct {
		name string
		in   NewDeal
		want Deal
	}{
		{
			name: "flash",
			in:   validFlash(),
			want: Deal{
				ID: "1", ProductID: "p1", Kind: KindFlash, PriceCents: 999, Stock: 10,
				StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), PerUserLimit: 2,
				CreatedAt: now,
			},
		},
		{
			name: "group keeps its group fields",
			in:   validGroup(),
			want: Deal{
				ID: "1", ProductID: "p1", Kind: KindGroup, PriceCents: 999, Stock: 10,
				StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), PerUserLimit: 1,
				GroupSize: 3, GroupTTLSeconds: 600, CreatedAt: now,
			},
		},
		{
			name: "times are stored in UTC",
			in: func() NewDeal {
				d := validFlash()
				d.StartsAt = d.StartsAt.In(local)
				d.EndsAt = d.EndsAt.In(local)
				return d
			}(),
			want: Deal{
				ID: "1", ProductID: "p1", Kind: KindFlash, PriceCents: 999, Stock: 10,
				StartsAt: now.Add(-time.Hour), EndsAt: now.Add(time.Hour), PerUserLimit: 2,
				CreatedAt: now,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()

			got, err := f.svc.CreateDeal(context.Background(), tt.in)

			if err != nil {
				t.Fatalf("CreateDeal() error = %v", err)
			}
			// cmp compares time.Time with Equal, so check the location separately.
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("deal mismatch (-got +want):\n%s", diff)
			}
			if got.StartsAt.Location() != time.UTC || got.EndsAt.Location() != time.UTC || got.CreatedAt.Location() != time.UTC {
				t.Errorf("deal times are not UTC: %v %v %v", got.StartsAt, got.EndsAt, got.CreatedAt)
			}
			// The stock record exists before the deal becomes visible; the change is announced
			// once, after the deal is stored.
			if diff := cmp.Diff(f.log.list(), []string{"stock.Create 1 10", "store.CreateDeal 1", "changes.Changed deal 1"}); diff != "" {
				t.Errorf("call order mismatch (-got +want):\n%s", diff)
			}
			stored, err := f.store.Deal(context.Background(), "1")
			if err != nil {
				t.Fatalf("stored deal: %v", err)
			}
			if diff := cmp.Diff(stored, got); diff != "" {
				t.Errorf("stored deal mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestCreateDealFailures(t *testing.T) {
	t.Parallel()
	errInventory := problem.New(problem.CodeUnavailable, "inventory is unreachable")
	errState := errors.New("state store down")
	tests := []struct {
		name      string
		in        NewDeal
		setup     func(f fixture)
		wantErr   error
		wantCalls []string
	}{
		{
			name:      "invalid input touches nothing",
			in:        func() NewDeal { d := validFlash(); d.Stock = 0; return d }(),
			wantErr:   &problem.Error{Code: problem.CodeValidation},
			wantCalls: nil,
		},
		{
			name:      "unknown product",
			in:        func() NewDeal { d := validFlash(); d.ProductID = "p404"; return d }(),
			wantErr:   ErrProductNotFound,
			wantCalls: nil,
		},
		{
			name:      "stock failure stores no deal",
			in:        validFlash(),
			setup:     func(f fixture) { f.stock.createErr = errInventory },
			wantErr:   errInventory,
			wantCalls: []string{"stock.Create 1 10"},
		},
		{
			name:      "store failure after the stock is created",
			in:        validFlash(),
			setup:     func(f fixture) { f.store.dealErr = errState },
			wantErr:   errState,
			wantCalls: []string{"stock.Create 1 10", "store.CreateDeal 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			if tt.setup != nil {
				tt.setup(f)
			}

			_, err := f.svc.CreateDeal(context.Background(), tt.in)

			if !errors.Is(err, tt.wantErr) {
				t.Errorf("CreateDeal() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(f.log.list(), tt.wantCalls); diff != "" {
				t.Errorf("calls mismatch (-got +want):\n%s", diff)
			}
			if deals, _ := f.store.Deals(context.Background()); len(deals) != 0 {
				t.Errorf("stored deals = %+v, want none", deals)
			}
		})
	}
}

func TestCreateDealUnknownProductIsNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture()
	in := validFlash()
	in.ProductID = "p404"

	_, err := f.svc.CreateDeal(context.Background(), in)

	if got, want := problem.CodeOf(err), problem.CodeNotFound; got != want {
		t.Errorf("CodeOf(%v) = %q, want %q", err, got, want)
	}
}

func TestDeals(t *testing.T) {
	t.Parallel()
	deal := func(id string, created time.Duration, starts, ends time.Duration) Deal {
		return Deal{ID: id, StartsAt: now.Add(starts), EndsAt: now.Add(ends), CreatedAt: now.Add(created)}
	}
	all := []Deal{
		deal("ended", -3*time.Hour, -2*time.Hour, -time.Hour),
		deal("active-old", -2*time.Hour, -time.Hour, time.Hour),
		deal("upcoming", -time.Hour, time.Hour, 2*time.Hour),
		deal("active-new", -time.Minute, -time.Minute, time.Minute),
		deal("starts-now", -30*time.Minute, 0, time.Hour),
		deal("ends-now", -20*time.Minute, -time.Hour, 0),
	}
	tests := []struct {
		name       string
		activeOnly bool
		want       []string
	}{
		{"all, newest first", false, []string{"active-new", "ends-now", "starts-now", "upcoming", "active-old", "ended"}},
		{"active only", true, []string{"active-new", "starts-now", "active-old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			f.svc.now = func() time.Time { return now }
			for _, d := range all {
				f.store.deals[d.ID] = d
			}

			got, err := f.svc.Deals(context.Background(), tt.activeOnly)

			if err != nil {
				t.Fatalf("Deals() error = %v", err)
			}
			var ids []string
			for _, d := range got {
				ids = append(ids, d.ID)
			}
			if diff := cmp.Diff(ids, tt.want); diff != "" {
				t.Errorf("deal ids mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDealWithStock(t *testing.T) {
	t.Parallel()
	f := newFixture()
	ctx := context.Background()
	d, err := f.svc.CreateDeal(ctx, validFlash())
	if err != nil {
		t.Fatal(err)
	}
	f.stock.levels = Levels{Total: 10, Available: 7, Reserved: 2, Sold: 1}
	// The clock moves while inventory answers: as_of is read after the answer.
	clock := now
	f.svc.now = func() time.Time { return clock }
	f.stock.onLevels = func() { clock = now.Add(1_234_567 * time.Nanosecond).In(time.FixedZone("UTC+2", 2*60*60)) }

	got, err := f.svc.Deal(ctx, d.ID)
	if err != nil {
		t.Fatalf("Deal() error = %v", err)
	}

	// as_of is the service's clock after the inventory read, UTC, to the millisecond.
	wantLevels := f.stock.levels
	wantLevels.AsOf = now.Add(time.Millisecond)
	if diff := cmp.Diff(got, DealWithStock{Deal: d, Stock: wantLevels}); diff != "" {
		t.Errorf("deal mismatch (-got +want):\n%s", diff)
	}
	if got.Stock.AsOf.Location() != time.UTC {
		t.Errorf("as_of %v is not UTC", got.Stock.AsOf)
	}
	// On the wire "stock" is the live levels object (DESIGN.md §4), not the initial quantity.
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var wire map[string]any
	if err := json.Unmarshal(b, &wire); err != nil {
		t.Fatal(err)
	}
	wantStock := map[string]any{"total": float64(10), "available": float64(7), "reserved": float64(2), "sold": float64(1),
		"as_of": "2025-06-01T12:00:00.001Z"}
	if diff := cmp.Diff(wire["stock"], any(wantStock)); diff != "" {
		t.Errorf("wire stock mismatch (-got +want):\n%s", diff)
	}
	if wire["id"] != d.ID {
		t.Errorf("wire id = %v, want %q", wire["id"], d.ID)
	}
}

func TestDealNotFound(t *testing.T) {
	t.Parallel()
	f := newFixture()

	_, err := f.svc.Deal(context.Background(), "d404")

	if !errors.Is(err, ErrDealNotFound) {
		t.Errorf("Deal() error = %v, want %v", err, ErrDealNotFound)
	}
	if calls := f.log.list(); len(calls) != 0 {
		t.Errorf("calls = %v, want none (no stock read for a missing deal)", calls)
	}
}

func TestCreateProduct(t *testing.T) {
	t.Parallel()
	f := newFixture()

	got, err := f.svc.CreateProduct(context.Background(), NewProduct{Name: "  Kettle ", Description: "steel", PriceCents: 4500})

	if err != nil {
		t.Fatalf("CreateProduct() error = %v", err)
	}
	want := Product{ID: "1", Name: "Kettle", Description: "steel", PriceCents: 4500, CreatedAt: now}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("product mismatch (-got +want):\n%s", diff)
	}
	stored, err := f.store.Product(context.Background(), "1")
	if err != nil {
		t.Fatalf("stored product: %v", err)
	}
	if diff := cmp.Diff(stored, want); diff != "" {
		t.Errorf("stored product mismatch (-got +want):\n%s", diff)
	}
}

func TestCreateProductAnnouncesTheChange(t *testing.T) {
	t.Parallel()
	f := newFixture()

	p, err := f.svc.CreateProduct(context.Background(), NewProduct{Name: "Kettle", PriceCents: 4500})

	if err != nil {
		t.Fatalf("CreateProduct() error = %v", err)
	}
	if diff := cmp.Diff(f.log.list(), []string{"store.CreateProduct " + p.ID, "changes.Changed product " + p.ID}); diff != "" {
		t.Errorf("calls mismatch (-got +want):\n%s", diff)
	}
}

func TestFailedWritesAnnounceNothing(t *testing.T) {
	t.Parallel()
	errState := errors.New("state store down")
	tests := []struct {
		name      string
		create    func(f fixture) error
		wantCalls []string
	}{
		{
			name: "product",
			create: func(f fixture) error {
				f.store.prodErr = errState
				_, err := f.svc.CreateProduct(context.Background(), NewProduct{Name: "Kettle", PriceCents: 4500})
				return err
			},
			wantCalls: []string{"store.CreateProduct 1"},
		},
		{
			name: "deal",
			create: func(f fixture) error {
				f.store.dealErr = errState
				_, err := f.svc.CreateDeal(context.Background(), validFlash())
				return err
			},
			wantCalls: []string{"stock.Create 1 10", "store.CreateDeal 1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()

			err := tt.create(f)

			if !errors.Is(err, errState) {
				t.Errorf("create error = %v, want %v", err, errState)
			}
			if diff := cmp.Diff(f.log.list(), tt.wantCalls); diff != "" {
				t.Errorf("calls mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// logLine is one record of the service's JSON log.
type logLine struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Kind  string `json:"kind"`
	ID    string `json:"id"`
	Error string `json:"error"`
}

func logLines(t *testing.T, s string) []logLine {
	t.Helper()
	var out []logLine
	for line := range strings.Lines(s) {
		var l logLine
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, l)
	}
	return out
}

func TestUnpublishedChangeDoesNotFailTheCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		create   func(f fixture) (string, error)
		stored   func(f fixture, id string) error
		wantKind string
	}{
		{
			name: "product",
			create: func(f fixture) (string, error) {
				p, err := f.svc.CreateProduct(context.Background(), NewProduct{Name: "Kettle", PriceCents: 4500})
				return p.ID, err
			},
			stored: func(f fixture, id string) error {
				_, err := f.store.Product(context.Background(), id)
				return err
			},
			wantKind: "product",
		},
		{
			name: "deal",
			create: func(f fixture) (string, error) {
				d, err := f.svc.CreateDeal(context.Background(), validFlash())
				return d.ID, err
			},
			stored: func(f fixture, id string) error {
				_, err := f.store.Deal(context.Background(), id)
				return err
			},
			wantKind: "deal",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			f.changes.failures = 1

			id, err := tt.create(f)

			if err != nil {
				t.Fatalf("create error = %v, want nil (the change is stored)", err)
			}
			if err := tt.stored(f, id); err != nil {
				t.Errorf("stored: %v", err)
			}
			want := []logLine{{Level: "WARN", Msg: "catalog_change_unpublished", Kind: tt.wantKind, ID: id, Error: "broker unreachable"}}
			if diff := cmp.Diff(logLines(t, f.logs.String()), want); diff != "" {
				t.Errorf("log mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestPublishedChangeLogsNothing(t *testing.T) {
	t.Parallel()
	f := newFixture()

	if _, err := f.svc.CreateDeal(context.Background(), validFlash()); err != nil {
		t.Fatal(err)
	}

	if got := f.logs.String(); got != "" {
		t.Errorf("log = %q, want nothing", got)
	}
}

func TestWithoutChangesNothingIsAnnounced(t *testing.T) {
	t.Parallel()
	log := &journal{}
	store := newFakeStore(log)
	svc := NewService(store, &fakeStock{log: log}, &fakeIDs{}, nil, nil)
	svc.now = func() time.Time { return now }

	p, err := svc.CreateProduct(context.Background(), NewProduct{Name: "Kettle", PriceCents: 4500})
	if err != nil {
		t.Fatalf("CreateProduct() error = %v", err)
	}
	in := validFlash()
	in.ProductID = p.ID
	if _, err := svc.CreateDeal(context.Background(), in); err != nil {
		t.Fatalf("CreateDeal() error = %v", err)
	}

	if diff := cmp.Diff(log.list(), []string{"store.CreateProduct 1", "stock.Create 2 10", "store.CreateDeal 2"}); diff != "" {
		t.Errorf("calls mismatch (-got +want):\n%s", diff)
	}
}

func TestKnownIDs(t *testing.T) {
	t.Parallel()
	errState := errors.New("state store down")
	tests := []struct {
		name    string
		setup   func(f fixture)
		want    KnownIDs
		wantErr error
	}{
		{
			name: "lists products and deals",
			setup: func(f fixture) {
				f.store.deals["d1"] = Deal{ID: "d1"}
			},
			want: KnownIDs{Products: []string{"p1"}, Deals: []string{"d1"}, ProductsCompleteFrom: now.Add(-time.Hour)},
		},
		{
			name:  "empty lists are not nil",
			setup: func(f fixture) { f.store.nilIDs = true },
			want:  KnownIDs{Products: []string{}, Deals: []string{}, ProductsCompleteFrom: now.Add(-time.Hour)},
		},
		{
			name:    "store failure",
			setup:   func(f fixture) { f.store.idsErr = errState },
			wantErr: errState,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture()
			tt.setup(f)

			got, err := f.svc.KnownIDs(context.Background())

			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("KnownIDs() error = %v, want %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("ids mismatch (-got +want):\n%s", diff)
			}
			if tt.wantErr == nil && (got.Products == nil || got.Deals == nil) {
				t.Errorf("KnownIDs() = %+v, want non-nil lists (JSON [] rather than null)", got)
			}
		})
	}
}
