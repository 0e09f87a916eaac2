//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// inventoryClient calls the inventory app through its own sidecar's invoke endpoint, as the
// order app does through its sidecar.
func inventoryClient(s *harness.Stack) (*harness.Client, map[string]string) {
	_, daprToken := s.Sup.Tokens()
	c := &harness.Client{
		Base: s.App("inventory").DaprHTTPURL() + "/v1.0/invoke/inventory/method",
		HC:   &http.Client{Timeout: 30 * time.Second},
	}
	return c, map[string]string{"dapr-api-token": daprToken}
}

type reserveAnswer struct {
	Outcome string `json:"outcome"`
	State   string `json:"state"`
}

// TestInventoryReservations runs reservations through a real daprd against Redis on a deal
// split over 4 buckets: 200 concurrent buyers of 1–2 units on 50 units, then commits and
// releases, checking every answer against the bucket documents in Redis.
func TestInventoryReservations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	s := harness.StartForTest(t, infra, harness.Options{
		Name:   "inventory",
		Apps:   []string{"gateway", "catalog", "inventory"},
		AppEnv: map[string]map[string]string{"inventory": {"STOCK_BUCKETS": "4"}},
	})
	dealID := newFlashDeal(t, s, 50)
	var meta struct {
		Stock   int `json:"stock"`
		Buckets int `json:"buckets"`
	}
	if found, err := s.State(ctx, "inventory", "stock:"+dealID, &meta); err != nil || !found || meta.Buckets != 4 || meta.Stock != 50 {
		t.Fatalf("meta document %+v (found=%t err=%v), want 50 units in 4 buckets", meta, found, err)
	}
	inv, hdr := inventoryClient(s)
	call := func(path string, body any) (*harness.Response, error) {
		return inv.Do(ctx, http.MethodPost, path, body, hdr)
	}
	until := time.Now().Add(15 * time.Minute).UTC().Format(time.RFC3339)

	// Another replica's writes, as Redis sees them: Dapr's redis store keeps the ETag in the
	// hash field "version", so bumping it makes every CAS that read the old one fail. The
	// injector bumps the four buckets in turn, one every 2ms, for as long as the buyers run
	// (a fixed burst could finish before the first CAS; a flat-out loop would starve every
	// CAS, which no real second replica does), so CASes conflict and must be re-read and
	// re-applied. (Redis profile only: other state stores keep their ETags elsewhere.)
	injected := 0
	stopInjecting := make(chan struct{})
	injectorDone := make(chan struct{})
	go func() {
		defer close(injectorDone)
		if s.Profile != harness.ProfileDefault {
			return
		}
		for i := 0; ; i++ {
			select {
			case <-stopInjecting:
				return
			default:
			}
			if err := s.Redis.HIncrBy(ctx, fmt.Sprintf("inventory||stock:%s:%d", dealID, i%4), "version", 1).Err(); err == nil {
				injected++
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	// 200 buyers at once, 300 units asked for 50.
	const buyers = 200
	type ask struct {
		order string
		qty   int
		ans   reserveAnswer
		err   error
	}
	asks := make([]ask, buyers)
	var wg sync.WaitGroup
	for i := range buyers {
		asks[i] = ask{order: fmt.Sprintf("it-%s-%d", dealID, i), qty: 1 + i%2}
		wg.Go(func() {
			a := &asks[i]
			resp, err := call("/reservations", map[string]any{"deal_id": dealID, "order_id": a.order, "quantity": a.qty, "until": until})
			switch {
			case err != nil:
				a.err = err
			case resp.Status != http.StatusOK:
				a.err = fmt.Errorf("status %d: %s", resp.Status, resp.Body)
			default:
				a.err = resp.JSON(&a.ans)
			}
		})
	}
	wg.Wait()
	// The injector keeps going through the commits and releases below: more CASes, more
	// chances to collide.
	stopInjector := sync.OnceFunc(func() {
		close(stopInjecting)
		<-injectorDone
		t.Logf("injected %d foreign bucket writes", injected)
	})
	defer stopInjector()

	var reserved []ask
	units := 0
	for _, a := range asks {
		switch {
		case a.err != nil:
			t.Errorf("reserve %s: %v", a.order, a.err)
		case a.ans == reserveAnswer{Outcome: "reserved", State: "reserved"}:
			reserved = append(reserved, a)
			units += a.qty
		case a.ans != reserveAnswer{Outcome: "sold_out", State: ""}:
			t.Errorf("reserve %s: answer %+v", a.order, a.ans)
		}
	}
	t.Logf("%d of %d buyers reserved %d units", len(reserved), buyers, units)
	// At least 50 one-unit buyers were refused, and a one-unit buyer is refused only when it
	// saw every bucket empty: all 50 units are reserved.
	if units != 50 {
		t.Errorf("%d units reserved, want all 50", units)
	}
	st, err := s.Stock(ctx, dealID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stock != 50 || st.Reserved != units || st.Sold != 0 || st.Available != 50-units {
		t.Errorf("stored totals %+v, want %d reserved of 50", st, units)
	}
	for _, a := range asks {
		h, held := st.Holds[a.order]
		isReserved := a.ans.Outcome == "reserved"
		if held != isReserved || (held && (h.Qty != a.qty || h.State != "reserved")) {
			t.Errorf("order %s answered %+v, stored hold %+v (held=%t)", a.order, a.ans, h, held)
		}
	}

	// A replay gets the hold back, not a second one.
	if len(reserved) > 0 {
		a := reserved[0]
		resp, err := call("/reservations", map[string]any{"deal_id": dealID, "order_id": a.order, "quantity": a.qty, "until": until})
		var ans reserveAnswer
		if err != nil || resp.Status != http.StatusOK || resp.JSON(&ans) != nil || ans != (reserveAnswer{"reserved", "reserved"}) {
			t.Errorf("replay of %s: %v %+v", a.order, err, resp)
		}
	}

	// Commit the first half, release the rest, concurrently.
	committed := map[string]bool{}
	soldUnits := 0
	for i, a := range reserved {
		if i%2 == 0 {
			committed[a.order] = true
			soldUnits += a.qty
		}
	}
	errs := make([]error, len(reserved))
	for i, a := range reserved {
		wg.Go(func() {
			action, want := "release", `"released"`
			if committed[a.order] {
				action, want = "commit", `"committed"`
			}
			resp, err := call("/reservations/"+a.order+"/"+action, map[string]string{"deal_id": dealID})
			switch {
			case err != nil:
				errs[i] = err
			case resp.Status != http.StatusOK || !strings.Contains(string(resp.Body), want):
				errs[i] = fmt.Errorf("%s: status %d %s", action, resp.Status, resp.Body)
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("order %s: %v", reserved[i].order, err)
		}
	}

	// Replays and refused transitions.
	if len(reserved) >= 2 {
		c, r := reserved[0].order, reserved[1].order // committed, released
		tests := []struct {
			path       string
			wantStatus int
			wantBody   string
		}{
			{"/reservations/" + c + "/commit", 200, `"committed"`},
			{"/reservations/" + c + "/release", 409, `"conflict"`},
			{"/reservations/" + r + "/release", 200, `"released"`},
			{"/reservations/" + r + "/commit", 409, `"conflict"`},
			{"/reservations/never-" + dealID + "/release", 200, `"absent"`},
			{"/reservations/never-" + dealID + "/commit", 404, `"not-found"`},
		}
		for _, tt := range tests {
			resp, err := call(tt.path, map[string]string{"deal_id": dealID})
			if err != nil || resp.Status != tt.wantStatus || !strings.Contains(string(resp.Body), tt.wantBody) {
				t.Errorf("%s: %v status %d body %s, want %d with %s", tt.path, err, resp.Status, resp.Body, tt.wantStatus, tt.wantBody)
			}
		}
	}

	st, err = s.Stock(ctx, dealID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stock != 50 || st.Sold != soldUnits || st.Reserved != 0 || st.Available != 50-soldUnits || st.Reserved+st.Sold > 50 {
		t.Errorf("stored totals %+v, want %d sold, none reserved", st, soldUnits)
	}
	for _, a := range reserved {
		want := "released"
		if committed[a.order] {
			want = "committed"
		}
		if h := st.Holds[a.order]; h.State != want || h.Qty != a.qty {
			t.Errorf("order %s: stored hold %+v, want %d units %s", a.order, h, a.qty, want)
		}
	}

	// Released stock sells again, and the API's totals agree with the store.
	resp, err := call("/reservations", map[string]any{"deal_id": dealID, "order_id": "late-" + dealID, "quantity": 1, "until": until})
	var late reserveAnswer
	if err != nil || resp.Status != http.StatusOK || resp.JSON(&late) != nil || late.Outcome != "reserved" {
		t.Errorf("reserve after releases: %v %+v", err, resp)
	}
	resp, err = inv.Do(ctx, http.MethodGet, "/stock/"+dealID, nil, hdr)
	var levels struct{ Stock, Available, Reserved, Sold int }
	if err != nil || resp.Status != http.StatusOK || resp.JSON(&levels) != nil {
		t.Fatalf("GET stock: %v %+v", err, resp)
	}
	if st, err = s.Stock(ctx, dealID); err != nil {
		t.Fatal(err)
	}
	if levels.Stock != st.Stock || levels.Available != st.Available || levels.Reserved != st.Reserved || levels.Sold != st.Sold {
		t.Errorf("GET stock %+v, store %+v", levels, st)
	}

	// The engine's metrics are exported.
	stopInjector()
	mresp, err := http.Get(s.AdminURL("inventory") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(body), "inventory_batch_size") {
		t.Errorf("inventory metrics lack inventory_batch_size")
	}
	conflicts := -1.0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "inventory_batch_size_count") || strings.HasPrefix(line, "inventory_batch_size_sum") {
			t.Log(line)
		}
		if strings.HasPrefix(line, "inventory_cas_conflicts_total") {
			t.Log(line)
			_, _ = fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &conflicts)
		}
	}
	if injected > 0 && conflicts <= 0 {
		t.Errorf("inventory_cas_conflicts_total = %v after %d foreign writes, want conflicts counted", conflicts, injected)
	}
}
