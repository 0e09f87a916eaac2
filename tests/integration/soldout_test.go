//go:build integration

package integration

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// stateWrites sums the state writes (set, delete, transaction, bulk) the sidecars of apps
// report on their metrics endpoint (dapr_component_state_count).
func stateWrites(ctx context.Context, t *testing.T, s *harness.Stack, apps ...string) float64 {
	t.Helper()
	total := 0.0
	for _, app := range apps {
		url := fmt.Sprintf("http://127.0.0.1:%d/metrics", s.App(app).MetricsPort)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s sidecar metrics: %v", app, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.HasPrefix(line, "dapr_component_state_count{") {
				continue
			}
			write := false
			for _, op := range []string{"set", "delete", "transaction", "bulk_set", "bulk_delete"} {
				write = write || strings.Contains(line, `operation="`+op+`"`)
			}
			// A write that failed left the store as it was (a replay's claim tries a create
			// first, which finds the key).
			if !write || !strings.Contains(line, `success="true"`) {
				continue
			}
			v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("%s metrics line %q: %v", app, line, err)
			}
			total += v
		}
		resp.Body.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return total
}

// TestSoldOutRefusalsWriteNothing: once a deal is found sold out, purchases of it are refused
// (at the gateway, or by the order app's mark after a lapse) without one state write on any
// sidecar of the path, and without a gateway mark for the refused keys; the retry of an order
// placed before the deal sold out still returns that order; and once stock comes back (a
// cancel), sales resume within the marks' TTL.
func TestSoldOutRefusalsWriteNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := harness.StartForTest(t, infra, harness.Options{
		Name: "soldout",
		Apps: []string{"gateway", "catalog", "inventory", "order"},
		// Background passes write on their own schedule (the reconciler's and the outbox
		// recovery's leases, the expiry sweep's window claims); here they would count as
		// writes of the refusals, so they stay out of the measured window.
		Components: map[string]map[string]string{
			"order-reconcile": {"schedule": "@every 1h"},
			"order-expiry":    {"schedule": "@every 1h"},
		},
		AppEnv: map[string]map[string]string{"order": {"OUTBOX_RECOVERY_INTERVAL": "1h", "OUTBOX_LEASE": "2h"},
			// One user buys in a tight loop for 2.5 s: the limiter must not be what answers.
			"gateway": {"RATE_LIMIT_USER": "1000000", "RATE_LIMIT_USER_BURST": "1000000"}},
	})
	dealID := newFlashDeal(t, s, 2)
	buyer, _ := s.NewUser(t)
	late, lateID := s.NewUser(t)
	buy, err := placeOrder(ctx, buyer, dealID, 2, "all")
	if err != nil || buy.Status != http.StatusCreated {
		t.Fatalf("buy the whole stock: %v %v", err, buy)
	}
	var bought orderView
	if err := buy.JSON(&bought); err != nil {
		t.Fatal(err)
	}
	first, err := placeOrder(ctx, late, dealID, 1, "discover")
	if err != nil || first.Status != http.StatusConflict || first.Problem().Code != "sold-out" {
		t.Fatalf("first purchase of the sold-out deal: %v %v, want 409 sold-out", err, first)
	}

	path := []string{"gateway", "order", "inventory", "catalog"}
	before := stateWrites(ctx, t, s, path...)
	// Past the 1 s marks too: the gateway forwards one purchase, the order app renews its
	// mark by reading inventory's levels.
	deadline := time.Now().Add(2500 * time.Millisecond)
	refused := 0
	for i := 0; time.Now().Before(deadline); i++ {
		r, err := placeOrder(ctx, late, dealID, 1, fmt.Sprint("refused-", i))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusConflict || string(r.Body) != string(first.Body) {
			t.Fatalf("purchase %d: %d %s, want the first refusal %s", i, r.Status, r.Body, first.Body)
		}
		refused++
	}
	// The retry of the order placed before the deal sold out is that order.
	replay, err := placeOrder(ctx, buyer, dealID, 2, "all")
	if err != nil || replay.Status != http.StatusCreated || string(replay.Body) != string(buy.Body) {
		t.Errorf("replay of the purchase: %v %v, want 201 %s", err, replay, buy.Body)
	}
	if got := stateWrites(ctx, t, s, path...) - before; got != 0 {
		t.Errorf("%d refused purchases (and one replay) made %v state writes, want 0", refused, got)
	}
	marks, err := s.Redis.Keys(ctx, "*placed:"+lateID+":*").Result()
	if err != nil {
		t.Fatal(err)
	}
	// The discovery and one purchase per lapse of the gateway's 1 s mark are forwarded.
	if len(marks) > 4 {
		t.Errorf("%d of %d purchases of the refused user were recorded as forwarded, want at most 4", len(marks), refused+1)
	}
	t.Logf("%d refusals, %d of them forwarded by the gateway", refused, len(marks)-1)

	// Stock comes back: sales resume once the marks lapse.
	buyer.MustDo(t, http.MethodPost, "/orders/"+bought.ID+"/cancel", nil, http.StatusOK, nil)
	resumed := time.Now()
	for i := 0; ; i++ {
		r, err := placeOrder(ctx, late, dealID, 1, fmt.Sprint("after-cancel-", i))
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == http.StatusCreated {
			break
		}
		if r.Status != http.StatusConflict || time.Since(resumed) > 10*time.Second {
			t.Fatalf("purchase after the cancel: %d %s (%s after it)", r.Status, r.Body, time.Since(resumed))
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Logf("a purchase succeeded %s after the cancel", time.Since(resumed).Round(time.Millisecond))
}
