package stock

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// fakeRepo is an in-memory Repository: Create keeps the first record of a deal.
type fakeRepo struct {
	mu      sync.Mutex
	records map[string]Record
	creates int
	err     error
}

func newFakeRepo() *fakeRepo { return &fakeRepo{records: map[string]Record{}} }

func (r *fakeRepo) Get(_ context.Context, dealID string) (Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return Record{}, r.err
	}
	rec, ok := r.records[dealID]
	if !ok {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

func (r *fakeRepo) Create(_ context.Context, rec Record) (Record, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return Record{}, false, r.err
	}
	if existing, ok := r.records[rec.DealID]; ok {
		return existing, false, nil
	}
	r.records[rec.DealID] = rec
	r.creates++
	return rec, true, nil
}

var (
	t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour)
)

func newService(repo Repository, at time.Time) *Service {
	s := NewService(repo)
	s.now = func() time.Time { return at }
	return s
}

func TestCreate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		existing *Record
		dealID   string
		qty      int
		want     Record
		wantErr  error
	}{
		{
			name:   "new record",
			dealID: "d1", qty: 10,
			want: Record{DealID: "d1", Stock: 10, Available: 10, CreatedAt: t1},
		},
		{
			name:     "same quantity again returns the existing record",
			existing: &Record{DealID: "d1", Stock: 10, Available: 7, Reserved: 2, Sold: 1, CreatedAt: t0},
			dealID:   "d1", qty: 10,
			want: Record{DealID: "d1", Stock: 10, Available: 7, Reserved: 2, Sold: 1, CreatedAt: t0},
		},
		{
			name:     "different quantity conflicts",
			existing: &Record{DealID: "d1", Stock: 10, Available: 10, CreatedAt: t0},
			dealID:   "d1", qty: 11,
			wantErr: ErrConflict,
		},
		{name: "largest stock", dealID: "d1", qty: MaxStock, want: Record{DealID: "d1", Stock: MaxStock, Available: MaxStock, CreatedAt: t1}},
		{name: "missing deal id", dealID: "", qty: 10, wantErr: &problem.Error{Code: problem.CodeValidation}},
		{name: "zero quantity", dealID: "d1", qty: 0, wantErr: &problem.Error{Code: problem.CodeValidation}},
		{name: "negative quantity", dealID: "d1", qty: -1, wantErr: &problem.Error{Code: problem.CodeValidation}},
		{name: "quantity over the limit", dealID: "d1", qty: MaxStock + 1, wantErr: &problem.Error{Code: problem.CodeValidation}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := newFakeRepo()
			if tt.existing != nil {
				repo.records[tt.existing.DealID] = *tt.existing
			}
			before := repo.records[tt.dealID]

			got, err := newService(repo, t1).Create(context.Background(), tt.dealID, tt.qty)

			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Create() error = %v, want %v", err, tt.wantErr)
				}
				if diff := cmp.Diff(repo.records[tt.dealID], before); diff != "" {
					t.Errorf("stored record changed (-got +want):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create() error = %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("record mismatch (-got +want):\n%s", diff)
			}
			if diff := cmp.Diff(repo.records[tt.dealID], tt.want); diff != "" {
				t.Errorf("stored record mismatch (-got +want):\n%s", diff)
			}
			if err := got.Check(); err != nil {
				t.Errorf("returned record breaks the invariant: %v", err)
			}
		})
	}
}

func TestCreateValidationFields(t *testing.T) {
	t.Parallel()
	_, err := newService(newFakeRepo(), t1).Create(context.Background(), "", 0)

	var perr *problem.Error
	if !errors.As(err, &perr) {
		t.Fatalf("Create() error = %v, want a *problem.Error", err)
	}
	var got []string
	for _, f := range perr.Fields {
		got = append(got, f.Field)
	}
	if diff := cmp.Diff(got, []string{"deal_id", "stock"}); diff != "" {
		t.Errorf("invalid fields mismatch (-got +want):\n%s", diff)
	}
}

func TestCreateRepositoryError(t *testing.T) {
	t.Parallel()
	errDown := errors.New("state store down")
	repo := newFakeRepo()
	repo.err = errDown

	_, err := newService(repo, t1).Create(context.Background(), "d1", 10)

	if !errors.Is(err, errDown) {
		t.Errorf("Create() error = %v, want %v", err, errDown)
	}
}

// Concurrent creates of the same deal with the same quantity all succeed with one record.
func TestCreateConcurrentSameQuantity(t *testing.T) {
	t.Parallel()
	repo := newFakeRepo()
	svc := newService(repo, t1)
	const callers = 8
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { _, errs[i] = svc.Create(context.Background(), "d1", 10) })
	}
	wg.Wait()

	for i, err := range errs {
		if err != nil {
			t.Errorf("caller %d: %v", i, err)
		}
	}
	if got, want := repo.creates, 1; got != want {
		t.Errorf("records created = %d, want %d", got, want)
	}
}

func TestGet(t *testing.T) {
	t.Parallel()
	repo := newFakeRepo()
	stored := Record{DealID: "d1", Stock: 3, Available: 3, CreatedAt: t0}
	repo.records["d1"] = stored
	svc := newService(repo, t1)
	ctx := context.Background()

	got, err := svc.Get(ctx, "d1")
	if err != nil {
		t.Fatalf("Get(d1) error = %v", err)
	}
	if diff := cmp.Diff(got, stored); diff != "" {
		t.Errorf("record mismatch (-got +want):\n%s", diff)
	}

	_, err = svc.Get(ctx, "d404")
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("Get(d404) error = %v, want %v", err, ErrNotFound)
	}
	if got, want := problem.CodeOf(err), problem.CodeNotFound; got != want {
		t.Errorf("Get(d404) code = %q, want %q", got, want)
	}
}

func TestRecordCheck(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		rec     Record
		wantErr bool
	}{
		{"fresh", Record{DealID: "d1", Stock: 10, Available: 10}, false},
		{"partly reserved and sold", Record{DealID: "d1", Stock: 10, Available: 5, Reserved: 3, Sold: 2}, false},
		{"sold out", Record{DealID: "d1", Stock: 10, Sold: 10}, false},
		{"counters exceed stock", Record{DealID: "d1", Stock: 10, Available: 10, Reserved: 1}, true},
		{"counters short of stock", Record{DealID: "d1", Stock: 10, Available: 8, Sold: 1}, true},
		{"negative available", Record{DealID: "d1", Stock: 10, Available: -1, Reserved: 11}, true},
		{"negative reserved", Record{DealID: "d1", Stock: 10, Available: 11, Reserved: -1}, true},
		{"negative sold", Record{DealID: "d1", Stock: 10, Available: 11, Sold: -1}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.rec.Check()
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("Check() error = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}
