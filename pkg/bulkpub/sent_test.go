package bulkpub_test

import (
	"context"
	"testing"

	"github.com/groupbuy/groupbuy/pkg/bulkpub"
)

func TestSentClaimsOnceAndForgetsTheOldest(t *testing.T) {
	t.Parallel()
	s := bulkpub.NewSent(2)
	if ok, _ := s.Claim("a"); !ok {
		t.Fatal("first claim of a refused")
	}
	if ok, published := s.Claim("a"); ok || published {
		t.Errorf("second claim of a in flight = %t, %t; want refused, not published", ok, published)
	}
	s.Settle("a", false) // released: claimable again
	if ok, _ := s.Claim("a"); !ok {
		t.Error("claim of a released id refused")
	}
	s.Settle("a", true)
	if ok, published := s.Claim("a"); ok || !published || !s.Published("a") {
		t.Errorf("claim of a published id = %t, %t", ok, published)
	}
	s.Claim("b")
	s.Claim("c")
	if s.Published("a") {
		t.Error("a still remembered past the bound")
	}
}

func TestGatherTakesWhatHasQueuedUp(t *testing.T) {
	t.Parallel()
	q := make(chan int, 10)
	for i := range 5 {
		q <- i
	}
	if b, ok := bulkpub.Gather(context.Background(), q, 3); !ok || len(b) != 3 {
		t.Errorf("first batch %v %t, want 3 items", b, ok)
	}
	if b, ok := bulkpub.Gather(context.Background(), q, 3); !ok || len(b) != 2 {
		t.Errorf("second batch %v %t, want the 2 left", b, ok)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if b, ok := bulkpub.Gather(ctx, q, 3); ok || b != nil {
		t.Errorf("gather after the end = %v %t", b, ok)
	}
}
