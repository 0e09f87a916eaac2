package stock

import (
	"context"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Buckets returns every bucket of a deal as stored, holds included, paged ones back in the
// bucket (Unpaged; a bucket never written reads as created). It is the audit read behind the order app's reconciler: it changes
// nothing, skips the batcher and the sold-out marker, and is never on the hot path. The
// buckets are read one after another, so a bucket may be newer than the one before it; each
// bucket is consistent in itself, which is all its invariant (Check) needs.
func (s *Service) Buckets(ctx context.Context, dealID string) ([]Bucket, error) {
	if fields := checkDealID(nil, dealID); len(fields) > 0 {
		return nil, problem.Invalid(fields...)
	}
	m, err := s.meta(ctx, dealID)
	if err != nil {
		return nil, err
	}
	out := make([]Bucket, 0, m.BucketCount())
	for i := range m.BucketCount() {
		b, err := s.bucket(ctx, m, i)
		if err != nil {
			return nil, err
		}
		pages, err := s.pageHolds(ctx, bucketKey{dealID, i}, b.Pages)
		if err != nil {
			return nil, err
		}
		out = append(out, Unpaged(b, func(k string) map[string]Hold { return pages[k] }))
	}
	return out, nil
}
