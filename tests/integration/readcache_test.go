//go:build integration

package integration

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/tests/harness"
)

// TestReadCacheReplicasStayHonest runs the read path on two gateway and two catalog replicas
// (the stack's own and one more of each): a product or deal created through either catalog
// replica is readable at once through either gateway replica; once the id is older than the
// second gateway's grace, that gateway still knows it (it learned it from the change event,
// not from a lookup); a purchase shows in the deal's stock within about a second; unknown
// ids are 404 on both.
func TestReadCacheReplicasStayHonest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const grace = 2 * time.Second
	gw2, err := stack.StartReplica(ctx, "gateway", map[string]string{"READ_CACHE_ID_GRACE": grace.String()})
	if err != nil {
		t.Fatal(err)
	}
	cat2, err := stack.StartReplica(ctx, "catalog", nil)
	if err != nil {
		t.Fatal(err)
	}
	admin := stack.Admin(t)
	user, _ := stack.NewUser(t)
	hc := &http.Client{Timeout: 30 * time.Second}
	gateways := map[string]*harness.Client{
		"gateway-1": stack.NewClient(),
		"gateway-2": {Base: gw2.AppURL() + "/api/v1", HC: hc},
	}
	// The second catalog replica is reached on its app port, as its sidecar would call it
	// for the gateway: app token and the forwarded admin identity.
	appToken, _ := stack.Sup.Tokens()
	viaCat2 := &harness.Client{Base: cat2.AppURL(), HC: hc}
	adminHdr := map[string]string{"dapr-api-token": appToken}
	for k, v := range (identity.User{ID: "it-admin", Username: "it-admin", Role: identity.RoleAdmin}).Header() {
		adminHdr[k] = v[0]
	}

	readable := func(what, path string) {
		t.Helper()
		for name, gw := range gateways {
			resp, err := gw.Do(ctx, http.MethodGet, path, nil, nil)
			if err != nil || resp.Status != http.StatusOK {
				t.Errorf("%s: GET %s through %s right after its create: %v %+v", what, path, name, err, resp)
			}
		}
	}

	p1 := createProduct(t, admin) // through gateway 1 → catalog 1
	readable("product created through gateway 1", "/products/"+p1.ID)
	var p2 product
	if resp, err := viaCat2.Do(ctx, http.MethodPost, "/products", map[string]any{"name": "Sencha", "price_cents": 900}, adminHdr); err != nil || resp.Status != http.StatusCreated {
		t.Fatalf("create on catalog 2: %v %+v", err, resp)
	} else if err := resp.JSON(&p2); err != nil {
		t.Fatal(err)
	}
	readable("product created on catalog 2", "/products/"+p2.ID)

	var d1, d2 createdDeal
	admin.MustDo(t, http.MethodPost, "/deals", flashDealBody(p1.ID, 20), http.StatusCreated, &d1)
	readable("deal created through gateway 1", "/deals/"+d1.ID)
	if resp, err := viaCat2.Do(ctx, http.MethodPost, "/deals", flashDealBody(p2.ID, 20), adminHdr); err != nil || resp.Status != http.StatusCreated {
		t.Fatalf("create deal on catalog 2: %v %+v", err, resp)
	} else if err := resp.JSON(&d2); err != nil {
		t.Fatal(err)
	}
	readable("deal created on catalog 2", "/deals/"+d2.ID)

	// Past gateway 2's grace its Bloom filter vouches for absence, so a deal it never read
	// must have reached it by its change event: its filter is built (its known-ids gauge is
	// exported) before the deal exists, and is not rebuilt for minutes (READ_CACHE_REBUILD).
	waitFilterBuilt(t, ctx, gw2.AdminURL()+"/metrics")
	var d3 createdDeal
	admin.MustDo(t, http.MethodPost, "/deals", flashDealBody(p1.ID, 5), http.StatusCreated, &d3)
	_, created, _ := ids.Parse(d3.ID)
	time.Sleep(time.Until(created.Add(grace + 500*time.Millisecond)))
	if resp, err := gateways["gateway-2"].Do(ctx, http.MethodGet, "/deals/"+d3.ID, nil, nil); err != nil || resp.Status != http.StatusOK {
		t.Errorf("deal %s read through gateway 2 only after its grace: %v %+v (the change event did not reach it)", d3.ID, err, resp)
	}

	// A change (a purchase) shows in the cached deal within the stock TTL (1 s) plus a load.
	var before dealView
	gateways["gateway-2"].MustDo(t, http.MethodGet, "/deals/"+d1.ID, nil, http.StatusOK, &before)
	if resp, _, err := placeAsAClientWould(ctx, user, d1.ID, 1, harness.UniqueName("rc")); err != nil || resp.Status != http.StatusCreated {
		t.Fatalf("purchase: %v %+v", err, resp)
	}
	bought := time.Now()
	for name, gw := range gateways {
		for {
			var v struct {
				Stock struct {
					Available int       `json:"available"`
					AsOf      time.Time `json:"as_of"`
				} `json:"stock"`
			}
			gw.MustDo(t, http.MethodGet, "/deals/"+d1.ID, nil, http.StatusOK, &v)
			if v.Stock.AsOf.IsZero() {
				t.Fatalf("%s: the deal's stock has no as_of", name)
			}
			if v.Stock.Available == before.Stock.Available-1 {
				t.Logf("%s: the purchase showed after %v", name, time.Since(bought).Round(time.Millisecond))
				break
			}
			if time.Since(bought) > 5*time.Second {
				t.Fatalf("%s: available still %d 5 s after a purchase of 1 (was %d)", name, v.Stock.Available, before.Stock.Available)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// Unknown ids: 404 on both, whatever their shape.
	old := strconv.FormatInt(time.Now().Add(-time.Hour).Sub(ids.Epoch).Milliseconds()<<22|77, 10)
	for name, gw := range gateways {
		for _, path := range []string{"/deals/" + old, "/products/" + old, "/deals/abc", "/products/-1"} {
			if resp, err := gw.Do(ctx, http.MethodGet, path, nil, nil); err != nil || resp.Status != http.StatusNotFound || resp.Problem().Code != "not-found" {
				t.Errorf("%s: GET %s = %v %+v, want 404 not-found", name, path, err, resp)
			}
		}
	}
}

// waitFilterBuilt waits until a gateway's read cache has built its Bloom filter: its
// known-ids gauge appears on its metrics endpoint after the first rebuild.
func waitFilterBuilt(t *testing.T, ctx context.Context, metricsURL string) {
	t.Helper()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "\ngateway_read_cache_known_ids") {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the gateway's Bloom filter was not built: %v", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
