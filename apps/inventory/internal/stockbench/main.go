// Command stockbench drives inventory's reservation engine (stock.Service) in-process over a
// real Dapr sidecar: scenario S1 of the benchmark harness (tests/bench, go tool task bench).
// It lives inside apps/inventory because the engine is internal to the app; the harness runs
// one or several of these processes, each beside a daprd of its own, against one hot deal.
//
//	stockbench -deal D -stock N -concurrency 256 -duration 10s -node 0 [-handshake]
//
// The sidecar is found the way the apps find theirs (DAPR_HOST, DAPR_GRPC_PORT,
// DAPR_API_TOKEN). Every goroutine reserves 1 unit for a new order id until the duration ends;
// order ids are Snowflake ids of -node (pkg/ids), as the order app makes them.
// At the end it prints one JSON line (Result) on stdout: answers by outcome, latency
// quantiles, and the store calls seen through the engine's Store interface: bucket reads,
// writes and ETag conflicts, so the harness can report conflicts per success and ops per CAS.
//
// With -handshake the harness drives it over stdin/stdout, so that several processes start
// together and it can read their CPU time before they exit: the process prints "ready" once
// the deal exists, starts on the first line read from stdin, prints its Result, and exits
// when stdin closes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/groupbuy/groupbuy/apps/inventory/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/inventory/internal/stock"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

// Result is the JSON line printed at the end.
type Result struct {
	Reserved     int64    `json:"reserved"`
	SoldOut      int64    `json:"sold_out"`
	Errors       int64    `json:"errors"`
	ErrorSamples []string `json:"error_samples,omitempty"`
	ElapsedS     float64  `json:"elapsed_s"`
	P50MS        float64  `json:"p50_ms"`
	P95MS        float64  `json:"p95_ms"`
	P99MS        float64  `json:"p99_ms"`
	Reads        int64    `json:"reads"`
	Writes       int64    `json:"writes"`
	Conflicts    int64    `json:"conflicts"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "stockbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	deal := flag.String("deal", "", "deal id (created with -stock units when missing)")
	units := flag.Int("stock", 1_000_000, "stock of the deal")
	buckets := flag.Int("buckets", 1, "buckets of the deal when this process creates it")
	conc := flag.Int("concurrency", 256, "goroutines reserving at once")
	dur := flag.Duration("duration", 10*time.Second, "how long to reserve")
	node := flag.Int("node", 0, "Snowflake node of the order ids (0..1023), unique per process")
	handshake := flag.Bool("handshake", false, `print "ready", start on a line from stdin, exit when stdin closes`)
	store := flag.String("state-store", "statestore", "Dapr state store name")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the reservations to this file")
	flag.Parse()
	gen, err := ids.New(*node)
	if err != nil {
		return err
	}
	if *deal == "" {
		return errors.New("-deal is required")
	}
	var cfg sidecar.Config
	if err := envconfig.Process(ctx, &cfg); err != nil {
		return err
	}
	client, err := sidecar.NewClient(cfg)
	if err != nil {
		return err
	}
	defer client.Close()

	counting := &countingStore{Store: daprstore.New(daprstate.New(client, *store))}
	svc, err := stock.NewService(counting, stock.Config{Buckets: *buckets, SoldOutTTL: time.Second})
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = svc.Create(cctx, *deal, *units)
	cancel()
	if err != nil {
		return fmt.Errorf("create deal %s: %w", *deal, err)
	}
	stdin := bufio.NewReader(os.Stdin)
	if *handshake {
		fmt.Println("ready")
		if _, err := stdin.ReadString('\n'); err != nil {
			return fmt.Errorf("waiting for the start line: %w", err)
		}
	}
	counting.reset()

	var (
		res       Result
		mu        sync.Mutex
		latencies []time.Duration
		samples   = map[string]bool{}
	)
	until := time.Now().Add(time.Hour)
	runCtx, cancelRun := context.WithTimeout(ctx, *dur)
	defer cancelRun()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			var mine []time.Duration
			for runCtx.Err() == nil {
				id := gen.NextString()
				t0 := time.Now()
				// The reservation itself gets its own context: a batch cut off by the end of
				// the run would answer neither way and leave holds nobody counted.
				rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
				r, err := svc.Reserve(rctx, *deal, id, 1, until)
				rcancel()
				mine = append(mine, time.Since(t0))
				switch {
				case err != nil:
					atomic.AddInt64(&res.Errors, 1)
					mu.Lock()
					if len(samples) < 5 {
						samples[err.Error()] = true
					}
					mu.Unlock()
				case r.Outcome == stock.OutcomeReserved:
					atomic.AddInt64(&res.Reserved, 1)
				default:
					atomic.AddInt64(&res.SoldOut, 1)
				}
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.ElapsedS = time.Since(start).Seconds()
	slices.Sort(latencies)
	res.P50MS, res.P95MS, res.P99MS = quantileMS(latencies, 0.50), quantileMS(latencies, 0.95), quantileMS(latencies, 0.99)
	for s := range samples {
		res.ErrorSamples = append(res.ErrorSamples, s)
	}
	res.Reads, res.Writes, res.Conflicts = counting.reads.Load(), counting.writes.Load(), counting.conflicts.Load()
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return err
	}
	if *handshake {
		_, _ = io.Copy(io.Discard, stdin) // until the harness has read this process's CPU time
	}
	return nil
}

func quantileMS(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(q*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i]) / float64(time.Millisecond)
}

// countingStore counts what the engine asks of its store: bucket reads, bucket writes and the
// writes that lost an ETag race (stock.ErrStale), so the harness sees the ops per CAS and the
// conflicts without scraping this process.
type countingStore struct {
	stock.Store
	reads, writes, conflicts atomic.Int64
}

func (c *countingStore) reset() {
	c.reads.Store(0)
	c.writes.Store(0)
	c.conflicts.Store(0)
}

func (c *countingStore) Bucket(ctx context.Context, dealID string, i int) (stock.Bucket, string, error) {
	c.reads.Add(1)
	return c.Store.Bucket(ctx, dealID, i)
}

func (c *countingStore) CreateBucket(ctx context.Context, b stock.Bucket) error {
	return c.count(c.Store.CreateBucket(ctx, b))
}

func (c *countingStore) UpdateBucket(ctx context.Context, b stock.Bucket, etag string) error {
	return c.count(c.Store.UpdateBucket(ctx, b, etag))
}

func (c *countingStore) count(err error) error {
	c.writes.Add(1)
	if errors.Is(err, stock.ErrStale) {
		c.conflicts.Add(1)
	}
	return err
}
