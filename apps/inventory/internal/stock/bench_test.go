package stock_test

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock/storetest"
)

var benchDealSize = flag.Int("inventory.deal-size", 1000,
	"BenchmarkReserve: reservations per deal before moving to a fresh one (the pages a bucket lists grow with it)")

// BenchmarkReserve measures Reserve throughput against the fake store with a simulated
// latency of 1ms per store call, from 32 and from 512 concurrent clients, for one bucket vs
// four buckets, with group commit and without (every request its own read-modify-CAS loop).
//
// Each deal takes -inventory.deal-size reservations (default 1,000; it has 10% more units)
// before the benchmark moves on to a fresh deal, as one flash sale of that size would. Every
// reservation leaves a hold, in its bucket document or, past 64 there, in a page the bucket
// lists, so the deal size sets how many pages a bucket lists.
//
// Reported: ops/s (reservations per second), cas/op (bucket writes per reservation) and
// conflicts/op (ETag conflicts per reservation). Without batching a single bucket under 512
// clients manages a few dozen reservations a second, so run the two modes with their own
// counts (see apps/inventory/BENCH.md):
//
//	go test -run '^$' -bench 'Reserve/^batched/' -benchtime 20000x ./apps/inventory/internal/stock/
//	go test -run '^$' -bench 'Reserve/^unbatched/' -benchtime 1000x ./apps/inventory/internal/stock/
func BenchmarkReserve(b *testing.B) {
	const latency = time.Millisecond
	perDeal := *benchDealSize
	dealStock := perDeal + perDeal/10
	type benchCase struct {
		name             string
		buckets, clients int
		disable          bool
	}
	var cases []benchCase
	for _, mode := range []string{"batched", "unbatched"} {
		for _, buckets := range []int{1, 4} {
			for _, clients := range []int{32, 512} {
				cases = append(cases, benchCase{
					name:    fmt.Sprintf("%s/%d-buckets/%d-clients", mode, buckets, clients),
					buckets: buckets, clients: clients, disable: mode == "unbatched",
				})
			}
		}
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			store := storetest.NewFake()
			svc, err := stock.NewService(store, stock.Config{
				Buckets: c.buckets, SoldOutTTL: time.Second, DisableBatching: c.disable, FlushTimeout: time.Minute,
			})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			deals := (b.N + perDeal - 1) / perDeal
			for d := range deals {
				if _, err := svc.Create(ctx, fmt.Sprintf("bench-%d", d), dealStock); err != nil {
					b.Fatal(err)
				}
			}
			store.Latency = latency
			before := store.Stats()
			var next, failed atomic.Int64
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for range c.clients {
				wg.Go(func() {
					for {
						i := int(next.Add(1)) - 1
						if i >= b.N {
							return
						}
						r, err := svc.Reserve(ctx, fmt.Sprintf("bench-%d", i/perDeal), fmt.Sprintf("o%d", i), 1, until)
						if err != nil || r.Outcome != stock.OutcomeReserved {
							failed.Add(1)
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if n := failed.Load(); n > 0 {
				b.Fatalf("%d of %d reservations failed", n, b.N)
			}
			after := store.Stats()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "ops/s")
			b.ReportMetric(float64(after.Writes-before.Writes)/float64(b.N), "cas/op")
			b.ReportMetric(float64(after.Conflicts-before.Conflicts)/float64(b.N), "conflicts/op")
		})
	}
}
