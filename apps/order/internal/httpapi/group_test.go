package httpapi_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/order/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/order/internal/order"
	"github.com/groupbuy/groupbuy/apps/order/internal/order/ordertest"
	"github.com/groupbuy/groupbuy/pkg/events"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

func TestPlaceGroupOrderRoute(t *testing.T) {
	t.Parallel()
	_, h := newServer()
	body := `{"order_id":"g-o1","user_id":"u1","deal_id":"group","group_id":"g1","pay_by":"2030-01-02T10:05:00Z"}`
	rec := do(t, h, request{method: http.MethodPost, path: "/internal/group-orders", body: body})
	if rec.Code != http.StatusCreated {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	var v httpapi.View
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.ID != "g-o1" || v.GroupID != "g1" || v.Status != "pending_payment" || !v.PayBy.Equal(ordertest.T0.Add(5*time.Minute)) {
		t.Errorf("view %+v", v)
	}
	// Replay: the same order.
	again := do(t, h, request{method: http.MethodPost, path: "/internal/group-orders", body: body})
	if again.Code != http.StatusCreated || again.Body.String() != rec.Body.String() {
		t.Errorf("replay %d %s", again.Code, again.Body)
	}
	bad := do(t, h, request{method: http.MethodPost, path: "/internal/group-orders", body: `{"order_id":"x"}`})
	checkProblem(t, bad, http.StatusBadRequest, problem.CodeValidation)
}

func TestGroupOutcomeEvents(t *testing.T) {
	t.Parallel()
	e, h := newServer()
	body := `{"order_id":"g-o1","user_id":"u1","deal_id":"group","group_id":"g1","pay_by":"2030-01-02T10:05:00Z"}`
	if rec := do(t, h, request{method: http.MethodPost, path: "/internal/group-orders", body: body}); rec.Code != http.StatusCreated {
		t.Fatalf("place: %d %s", rec.Code, rec.Body)
	}
	failed := events.GroupV1{V: 1, EventID: "g1:group.failed", Type: events.TopicGroupFailed, GroupID: "g1", Status: "failed",
		Members: []events.Member{{UserID: "u1", OrderID: "g-o1"}}}
	data, _ := json.Marshal(failed)
	ce, _ := json.Marshal(map[string]any{"id": failed.EventID, "topic": failed.Type, "data": json.RawMessage(data)})
	tests := []struct {
		name, body, want string
	}{
		{name: "failed group settles its orders", body: string(ce), want: "SUCCESS"},
		{name: "redelivery", body: string(ce), want: "SUCCESS"},
		{name: "poison", body: `{"id":"x","data":{"v":7}}`, want: "DROP"},
	}
	for _, tt := range tests { // sequential: one server
		rec := do(t, h, request{method: http.MethodPost, path: "/events/group", body: tt.body})
		var out struct{ Status string }
		_ = json.Unmarshal(rec.Body.Bytes(), &out)
		if rec.Code != http.StatusOK || out.Status != tt.want {
			t.Errorf("%s: %d %s, want %s", tt.name, rec.Code, rec.Body, tt.want)
		}
	}
	o, ok := e.Store.Order("g-o1")
	if !ok || o.Status != order.StatusCancelled || !o.Settled {
		t.Errorf("order after the group failed: %+v", o)
	}
}
