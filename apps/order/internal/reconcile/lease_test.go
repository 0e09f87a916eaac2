package reconcile

import (
	"errors"
	"testing"
	"time"
)

// TestLease walks the lease through the ticks of two replicas: claims exclude each other
// while a pass runs and for MinInterval after one started, an expired lease is taken over,
// and the replica that lost it cannot end its successor's lease.
func TestLease(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	const ttl, gap = 5 * time.Minute, 30 * time.Second
	var l Lease
	steps := []struct {
		name    string
		do      func() error
		wantErr error
		want    Lease
	}{
		{"a claims", func() error { return l.claim("a", t0, ttl, gap) }, nil, Lease{Owner: "a", Until: t0.Add(ttl), StartedAt: t0}},
		{"b cannot while a runs", func() error { return l.claim("b", t0.Add(time.Minute), ttl, gap) }, ErrSkipped, Lease{Owner: "a", Until: t0.Add(ttl), StartedAt: t0}},
		{"b takes over the expired lease", func() error { return l.claim("b", t0.Add(ttl), ttl, gap) }, nil, Lease{Owner: "b", Until: t0.Add(2 * ttl), StartedAt: t0.Add(ttl)}},
		{"a cannot end b's lease", func() error { return l.release("a") }, ErrUnchanged, Lease{Owner: "b", Until: t0.Add(2 * ttl), StartedAt: t0.Add(ttl)}},
		{"b ends its lease, keeping its start", func() error { return l.release("b") }, nil, Lease{StartedAt: t0.Add(ttl)}},
		{"a cannot start within the interval", func() error { return l.claim("a", t0.Add(ttl+gap-time.Second), ttl, gap) }, ErrSkipped, Lease{StartedAt: t0.Add(ttl)}},
		{"a starts after it", func() error { return l.claim("a", t0.Add(ttl+gap), ttl, gap) }, nil, Lease{Owner: "a", Until: t0.Add(2*ttl + gap), StartedAt: t0.Add(ttl + gap)}},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil) {
			t.Fatalf("%s: error %v, want %v", s.name, err, s.wantErr)
		}
		if l != s.want {
			t.Fatalf("%s: lease %+v, want %+v", s.name, l, s.want)
		}
	}
}
