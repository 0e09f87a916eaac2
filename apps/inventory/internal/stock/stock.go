// Package stock owns the stock of each deal. A deal's counters live in one document (one
// state key) so every change is a single ETag-checked write: Redis MULTI does not roll back,
// so the invariant available + reserved + sold == stock can only be kept inside one key.
package stock

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Errors of the stock domain.
var (
	ErrNotFound = problem.New(problem.CodeNotFound, "no stock record for this deal")
	ErrConflict = problem.New(problem.CodeConflict, "the deal's stock was already created with another quantity")
)

// Record is the stored stock document of one deal.
type Record struct {
	DealID    string    `json:"deal_id"`
	Stock     int       `json:"stock"`
	Available int       `json:"available"`
	Reserved  int       `json:"reserved"`
	Sold      int       `json:"sold"`
	CreatedAt time.Time `json:"created_at"`
}

// Check verifies the record's invariant.
func (r Record) Check() error {
	if r.Available < 0 || r.Reserved < 0 || r.Sold < 0 {
		return fmt.Errorf("stock %s: negative counter %+v", r.DealID, r)
	}
	if r.Available+r.Reserved+r.Sold != r.Stock {
		return fmt.Errorf("stock %s: available+reserved+sold != stock in %+v", r.DealID, r)
	}
	return nil
}

// Repository stores records. Create fails with ErrExists-like behaviour reported as exists=true.
type Repository interface {
	Get(ctx context.Context, dealID string) (Record, error)
	// Create stores r unless a record exists; then it returns the existing one and created=false.
	Create(ctx context.Context, r Record) (existing Record, created bool, err error)
}

// Service implements the stock use cases.
type Service struct {
	repo Repository
	now  func() time.Time
}

// NewService returns a service over repo.
func NewService(repo Repository) *Service { return &Service{repo: repo, now: time.Now} }

// Create makes the stock record of a deal with qty units available. It is idempotent: calling
// it again with the same quantity returns the existing record.
func (s *Service) Create(ctx context.Context, dealID string, qty int) (Record, error) {
	var fields []problem.FieldError
	if dealID == "" {
		fields = append(fields, problem.FieldError{Field: "deal_id", Reason: "is required"})
	}
	if qty < 1 || qty > MaxStock {
		fields = append(fields, problem.FieldError{Field: "stock", Reason: fmt.Sprintf("must be between 1 and %d", MaxStock)})
	}
	if len(fields) > 0 {
		return Record{}, problem.Invalid(fields...)
	}
	rec := Record{DealID: dealID, Stock: qty, Available: qty, CreatedAt: s.now().UTC()}
	existing, created, err := s.repo.Create(ctx, rec)
	if err != nil {
		return Record{}, err
	}
	if created {
		return rec, nil
	}
	if existing.Stock != qty {
		return Record{}, ErrConflict
	}
	return existing, nil
}

// Get returns the stock record of a deal.
func (s *Service) Get(ctx context.Context, dealID string) (Record, error) {
	rec, err := s.repo.Get(ctx, dealID)
	if errors.Is(err, ErrNotFound) {
		return Record{}, fmt.Errorf("deal %s: %w", dealID, ErrNotFound)
	}
	return rec, err
}

// MaxStock bounds a deal's stock.
const MaxStock = 1_000_000
