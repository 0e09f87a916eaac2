package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/readcache"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

// withReads turns the read cache on, over the env's invoker, and hands it to *c.
func withReads(t *testing.T, c **readcache.Cache) option {
	return func(a *httpapi.API) {
		var err error
		if *c, err = readcache.New(a.Invoker.(readcache.Invoker), "catalog", readcache.Config{}); err != nil {
			t.Fatal(err)
		}
		a.Reads = *c
	}
}

func idBefore(d time.Duration) string {
	return strconv.FormatInt(time.Now().Add(-d).Sub(ids.Epoch).Milliseconds()<<22|5, 10)
}

// With the read cache on, deal reads are answered from memory after the first, a deal
// created through this replica is known at once, and a change event relayed by the sidecar
// drops a stale "not found".
func TestReadsServedFromTheCache(t *testing.T) {
	t.Parallel()
	var cache *readcache.Cache
	e := newEnv(t, withReads(t, &cache))
	srv := e.serve(t)
	ctx := context.Background()

	deal := idBefore(time.Hour)
	e.invoker.resp = &sidecar.Response{Status: http.StatusOK, Body: []byte(`{"id":"` + deal + `","stock":{"available":2}}`)}
	for range 5 {
		if rec := e.do(http.MethodGet, "/api/v1/deals/"+deal, "", nil); rec.Code != http.StatusOK || rec.Header().Get("ETag") == "" {
			t.Fatalf("GET deal = %d %s (ETag %q)", rec.Code, rec.Body, rec.Header().Get("ETag"))
		}
	}
	if n := len(e.invoker.invocations()); n != 1 {
		t.Errorf("%d invocations for five reads, want 1", n)
	}

	// Not found, remembered; then the change event of its creation on another replica.
	other := idBefore(2 * time.Second)
	e.invoker.resp, e.invoker.err = nil, problem.New(problem.CodeNotFound, "deal not found")
	for range 3 {
		if rec := e.do(http.MethodGet, "/api/v1/deals/"+other, "", nil); rec.Code != http.StatusNotFound {
			t.Fatalf("GET unknown deal = %d", rec.Code)
		}
	}
	if n := len(e.invoker.invocations()); n != 2 {
		t.Errorf("%d invocations after three reads of one unknown deal, want 2", n)
	}
	e.invoker.err = nil
	e.invoker.resp = &sidecar.Response{Status: http.StatusOK, Body: []byte(`{"id":"` + other + `","stock":{"available":1}}`)}
	ev := fmt.Sprintf(`{"specversion":"1.0","id":"deal:%s","source":"catalog","type":"deal.changed","topic":"deal.changed","pubsubname":"pubsub-broadcast","datacontenttype":"application/json","data":{"v":1,"kind":"deal","id":%q,"occurred_at":"2026-12-03T00:00:00Z"}}`, other, other)
	if code, st := relay(t, ctx, srv, httpapi.RouteCatalogChanged, ev, ""); code != http.StatusUnauthorized {
		t.Errorf("change event without the app token = %d %s, want 401", code, st)
	}
	if _, st := relay(t, ctx, srv, httpapi.RouteCatalogChanged, ev, appToken); st != "SUCCESS" {
		t.Fatalf("change event answered %q", st)
	}
	if rec := e.do(http.MethodGet, "/api/v1/deals/"+other, "", nil); rec.Code != http.StatusOK {
		t.Errorf("GET deal after its change event = %d %s", rec.Code, rec.Body)
	}

	// A create through this replica: its id is known, so the filter never refuses it.
	created := idBefore(0)
	e.invoker.resp = &sidecar.Response{Status: http.StatusCreated, Body: []byte(`{"id":"` + created + `"}`)}
	if rec := e.do(http.MethodPost, "/api/v1/products", `{"name":"x"}`, bearer(e.token(t, root))); rec.Code != http.StatusCreated {
		t.Fatalf("POST product = %d %s", rec.Code, rec.Body)
	}
	if cache.Known().Absent("product", created, time.Now().Add(-time.Hour)) {
		t.Error("a product created through this replica is not known to its filter")
	}
}
