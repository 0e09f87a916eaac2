package clients_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/order/internal/clients"
	"github.com/groupbuy/groupbuy/apps/order/internal/reconcile"
)

// fakeCaller answers each "app method path" with a canned JSON body, decoded the way
// sidecar.Invoker decodes (encoding/json, unknown fields ignored).
type fakeCaller struct {
	answers map[string]string
	calls   []string
}

func (f *fakeCaller) Call(_ context.Context, app, method, path string, _ http.Header, _, out any) error {
	key := app + " " + method + " " + path
	f.calls = append(f.calls, key)
	return json.Unmarshal([]byte(f.answers[key]), out)
}

// TestReconcileReads decodes the other apps' answers (as their httpapi packages write them)
// into the reconciler's types, and escapes ids into paths.
func TestReconcileReads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	at := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	f := &fakeCaller{answers: map[string]string{
		"catalog GET deals": `{"items":[{"id":"d1","product_id":"p1","kind":"group","price_cents":100,"stock":5,
			"starts_at":"2030-01-01T00:00:00Z","ends_at":"2030-01-02T10:00:00Z","per_user_limit":1,"group_size":3,
			"group_ttl_seconds":600,"created_at":"2030-01-01T00:00:00Z"}]}`,
		"inventory GET deals/d%2F1/holds": `{"deal_id":"d/1","stock":5,"buckets":[{"bucket":0,"stock":5,"available":3,"reserved":1,
			"sold":1,"archived":0,"holds":{"o1":{"qty":1,"until":"2030-01-02T10:00:00Z","state":"reserved","at":"2030-01-02T10:00:00Z"}}}]}`,
		"payment GET ledger/o1": `{"order_id":"o1","charges":[{"charge_id":"ch_1","order_id":"o1","status":"succeeded",
			"amount_cents":100,"created_at":"2030-01-02T10:00:00Z"}],"refunds":[]}`,
	}}
	deals, err := clients.NewCatalog(f, "catalog").Deals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(deals, []reconcile.Deal{{ID: "d1", Kind: "group", EndsAt: at, GroupTTLSeconds: 600}}); diff != "" {
		t.Errorf("deals (-got +want):\n%s", diff)
	}
	holds, err := clients.NewInventory(f, "inventory").Holds(ctx, "d/1")
	if err != nil {
		t.Fatal(err)
	}
	wantHolds := reconcile.DealHolds{DealID: "d/1", Buckets: []reconcile.Bucket{{Stock: 5, Available: 3, Reserved: 1, Sold: 1,
		Holds: map[string]reconcile.Hold{"o1": {Qty: 1, Until: at, State: "reserved", At: at}}}}}
	if diff := cmp.Diff(holds, wantHolds); diff != "" {
		t.Errorf("holds (-got +want):\n%s", diff)
	}
	l, err := clients.NewPayment(f, "payment").Ledger(ctx, "o1")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, reconcile.Ledger{Charges: []reconcile.Charge{{ChargeID: "ch_1", Status: "succeeded", AmountCents: 100}}, Refunds: []reconcile.Refund{}}); diff != "" {
		t.Errorf("ledger (-got +want):\n%s", diff)
	}
}
