package stock

import (
	"context"
	"errors"

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
		b, err := s.unpagedBucket(ctx, m, i)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// unpagedBucket reads bucket i with its pages. A page deleted between the two reads (another
// replica unlisted it) means the bucket read is stale: it is read again.
func (s *Service) unpagedBucket(ctx context.Context, m Meta, i int) (Bucket, error) {
	for attempt := 0; ; attempt++ {
		b, err := s.bucket(ctx, m, i)
		if err != nil {
			return Bucket{}, err
		}
		pc := s.pageCache(bucketKey{m.DealID, i})
		pc.mu.Lock()
		err = pc.sync(ctx, s.store, bucketKey{m.DealID, i}, b.Pages)
		if err == nil {
			b = Unpaged(b, pc.holds)
		}
		pc.mu.Unlock()
		if errors.Is(err, ErrNotFound) && attempt < 10 {
			if err := sleep(ctx, s.backoff(attempt)); err != nil {
				return Bucket{}, err
			}
			continue
		}
		return b, err
	}
}
