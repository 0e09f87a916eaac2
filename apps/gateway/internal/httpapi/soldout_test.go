package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/httpapi"
	"github.com/groupbuy/groupbuy/apps/gateway/internal/soldout"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

const markTTL = time.Second

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// orderApp is the order app as the gateway sees it: per deal a number of units left; a
// purchase stores its answer per (user, key) and a retry replays it; a purchase of a deal with
// nothing left is refused sold out.
type orderApp struct {
	mu      sync.Mutex
	left    map[string]int
	answers map[string]*sidecar.Response
	calls   int
}

var soldOutDoc = []byte(`{"type":"https://groupbuy.dev/problems/sold-out","title":"Sold out","status":409,"code":"sold-out","detail":"the deal is sold out"}`)

func (o *orderApp) Raw(_ context.Context, _, _, path string, hdr http.Header, _ []byte) (*sidecar.Response, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	var deal string
	if _, err := fmt.Sscanf(path, "deals/%s", &deal); err != nil {
		return nil, err
	}
	deal = deal[:len(deal)-len("/orders")]
	id := hdr.Get(identity.HeaderUserID) + "|" + hdr.Get("Idempotency-Key")
	if r, ok := o.answers[id]; ok {
		return r, nil
	}
	if o.left[deal] == 0 {
		// As sidecar.Invoker hands an app's problem document back.
		var doc problem.Document
		if err := json.Unmarshal(soldOutDoc, &doc); err != nil {
			return nil, err
		}
		return nil, problem.FromDocument(doc, 0)
	}
	o.left[deal]--
	r := &sidecar.Response{Status: http.StatusCreated, Header: http.Header{"Content-Type": {"application/json"}},
		Body: fmt.Appendf(nil, `{"id":"o-%d","deal_id":%q}`, len(o.answers)+1, deal)}
	o.answers[id] = r
	return r, nil
}

func (o *orderApp) set(deal string, left int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.left[deal] = left
}

func (o *orderApp) Calls() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.calls
}

// placed is soldout.Placed in memory; err fails every call.
type placed struct {
	mu   sync.Mutex
	keys map[string]bool
	err  error
}

func (p *placed) Mark(_ context.Context, userID, key string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	p.keys[userID+"|"+key] = true
	return nil
}

func (p *placed) Seen(_ context.Context, userID, key string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[userID+"|"+key], p.err
}

func (p *placed) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

func (p *placed) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

type edgeEnv struct {
	*env
	app    *orderApp
	placed *placed
	clock  *clock
}

func newEdgeEnv(t *testing.T) *edgeEnv {
	t.Helper()
	app := &orderApp{left: map[string]int{"101": 1, "102": 1}, answers: map[string]*sidecar.Response{}}
	p := &placed{keys: map[string]bool{}}
	c := &clock{now: time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(a *httpapi.API) {
		a.Invoker = app
		a.SoldOut = soldout.NewEdge(soldout.NewMarks(markTTL, c.Now), p)
	})
	return &edgeEnv{env: e, app: app, placed: p, clock: c}
}

func (e *edgeEnv) buy(t *testing.T, u identity.User, deal, key, body string) (int, string) {
	t.Helper()
	hdr := bearer(e.token(t, u))
	if key != "" {
		hdr["Idempotency-Key"] = key
	}
	rec := e.do(http.MethodPost, "/api/v1/deals/"+deal+"/orders", body, hdr)
	if rec.Code >= 400 {
		if got := rec.Header().Get("Content-Type"); got != problem.ContentType {
			t.Errorf("%s %s: Content-Type = %q, want %q", deal, key, got, problem.ContentType)
		}
	}
	return rec.Code, rec.Body.String()
}

func TestSoldOutAtTheEdge(t *testing.T) {
	t.Parallel()
	e := newEdgeEnv(t)
	if code, body := e.buy(t, alice, "101", "bought", `{"quantity":1}`); code != http.StatusCreated {
		t.Fatalf("purchase = %d %s, want 201", code, body)
	}
	code, first := e.buy(t, bob, "101", "k1", `{"quantity":1}`)
	var doc problem.Document
	if err := json.Unmarshal([]byte(first), &doc); err != nil || code != http.StatusConflict || doc.Code != problem.CodeSoldOut || doc.Detail != "the deal is sold out" {
		t.Fatalf("order app's refusal = %d %s, want 409 %s", code, first, soldOutDoc)
	}
	calls, marked := e.app.Calls(), e.placed.Len()

	for _, key := range []string{"k2", "k3"} {
		code, body := e.buy(t, bob, "101", key, `{"quantity":1}`)
		if code != http.StatusConflict || body != first {
			t.Errorf("refusal at the edge = %d %s, want 409 %s", code, body, first)
		}
	}
	if got := e.app.Calls(); got != calls {
		t.Errorf("refusals invoked the order app %d times, want none", got-calls)
	}
	if got := e.placed.Len(); got != marked {
		t.Errorf("refusals marked %d keys, want none", got-marked)
	}
}

// The mark must not shadow a stored answer: keys that were forwarded get the order app's
// answer, the 201 of an order placed before the deal sold out among them.
func TestSoldOutAtTheEdgeKeepsReplays(t *testing.T) {
	t.Parallel()
	e := newEdgeEnv(t)
	_, order := e.buy(t, alice, "101", "bought", `{"quantity":1}`)
	e.buy(t, bob, "101", "k1", `{"quantity":1}`) // sold out: marks the deal

	calls := e.app.Calls()
	code, body := e.buy(t, alice, "101", "bought", `{"quantity":1}`)
	if code != http.StatusCreated || body != order {
		t.Errorf("replay while sold out = %d %s, want 201 %s", code, body, order)
	}
	// Another user's key of the same name was never forwarded.
	if code, _ := e.buy(t, bob, "101", "bought", `{"quantity":1}`); code != http.StatusConflict {
		t.Errorf("bob's key = %d, want 409", code)
	}
	if got, want := e.app.Calls()-calls, 1; got != want {
		t.Errorf("order app invoked %d times, want %d (the replay only)", got, want)
	}
}

func TestSoldOutAtTheEdgeScope(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		deal        string
		key         string
		body        string
		wantForward bool
	}{
		{name: "same deal, same quantity", deal: "101", key: "n", body: `{"quantity":2}`},
		{name: "another deal", deal: "102", key: "n", body: `{"quantity":2}`, wantForward: true},
		{name: "fewer units than refused", deal: "101", key: "n", body: `{"quantity":1}`, wantForward: true},
		{name: "more units than ever refused", deal: "101", key: "n", body: `{"quantity":3}`, wantForward: true},
		{name: "body the order app refuses", deal: "101", key: "n", body: `{"quantity":2,"x":1}`, wantForward: true},
		{name: "no Idempotency-Key", deal: "101", body: `{"quantity":2}`, wantForward: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEdgeEnv(t)
			e.app.set("101", 0)
			e.buy(t, bob, "101", "k1", `{"quantity":2}`) // sold out for 2 units
			calls := e.app.Calls()
			e.buy(t, alice, tt.deal, tt.key, tt.body)
			if got := e.app.Calls() > calls; got != tt.wantForward {
				t.Errorf("forwarded = %t, want %t", got, tt.wantForward)
			}
		})
	}
}

// Stock comes back (an unpaid order expires): the mark refuses for its TTL only, and a key
// refused at the edge stored nothing, so it buys once the mark has lapsed.
func TestSoldOutAtTheEdgeLapses(t *testing.T) {
	t.Parallel()
	e := newEdgeEnv(t)
	e.app.set("101", 0)
	e.buy(t, bob, "101", "k1", `{"quantity":1}`)
	e.app.set("101", 1)

	e.clock.Advance(markTTL - time.Millisecond)
	if code, _ := e.buy(t, alice, "101", "k2", `{"quantity":1}`); code != http.StatusConflict {
		t.Fatalf("within the TTL = %d, want 409", code)
	}
	e.clock.Advance(time.Millisecond)
	if code, body := e.buy(t, alice, "101", "k2", `{"quantity":1}`); code != http.StatusCreated {
		t.Fatalf("same key after the TTL = %d %s, want 201", code, body)
	}
	// The 201 forgot the mark: the next purchase is forwarded (and refused there).
	calls := e.app.Calls()
	e.buy(t, bob, "101", "k3", `{"quantity":1}`)
	if got := e.app.Calls(); got != calls+1 {
		t.Errorf("purchase after the mark was forgotten not forwarded")
	}
}

// A purchase whose key cannot be recorded is neither refused nor forwarded: forwarding it
// unrecorded would let a later mark shadow its stored answer.
func TestSoldOutAtTheEdgeUnrecorded(t *testing.T) {
	t.Parallel()
	e := newEdgeEnv(t)
	e.placed.fail(errors.New("redis down"))
	rec := e.do(http.MethodPost, "/api/v1/deals/101/orders", `{"quantity":1}`, map[string]string{
		"Authorization": "Bearer " + e.token(t, alice), "Idempotency-Key": "k1"})
	if got, want := decodeProblem(t, rec).Code, problem.CodeUnavailable; got != want {
		t.Errorf("code = %s, want %s", got, want)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
	if got := e.app.Calls(); got != 0 {
		t.Errorf("order app invoked %d times, want none", got)
	}
}

// While a lapsed mark is checked by one forwarded purchase, the others wait for its answer
// instead of all reaching the order app.
func TestSoldOutAtTheEdgeOneProbe(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	app := &orderApp{left: map[string]int{}, answers: map[string]*sidecar.Response{}}
	gate := &gatedApp{orderApp: app, entered: make(chan struct{}), release: make(chan struct{})}
	c := &clock{now: time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)}
	e := newEnv(t, func(a *httpapi.API) {
		a.Invoker = gate
		a.SoldOut = soldout.NewEdge(soldout.NewMarks(markTTL, c.Now), &placed{keys: map[string]bool{}})
	})
	e.do(http.MethodPost, "/api/v1/deals/101/orders", `{"quantity":1}`, map[string]string{
		"Authorization": "Bearer " + e.token(t, bob), "Idempotency-Key": "k0"})
	c.Advance(markTTL)
	gate.gateNext.Store(true)

	const n = 6
	codes := make(chan int, n)
	tok := e.token(t, alice)
	for i := range n {
		go func() {
			rec := e.do(http.MethodPost, "/api/v1/deals/101/orders", `{"quantity":1}`, map[string]string{
				"Authorization": "Bearer " + tok, "Idempotency-Key": fmt.Sprint("k", i+1)})
			codes <- rec.Code
		}()
	}
	select {
	case <-gate.entered:
	case <-ctx.Done():
		t.Fatal("no purchase reached the order app")
	}
	close(gate.release)
	for range n {
		select {
		case code := <-codes:
			if code != http.StatusConflict {
				t.Errorf("purchase = %d, want 409", code)
			}
		case <-ctx.Done():
			t.Fatal("purchases did not finish")
		}
	}
	if got, want := app.Calls(), 2; got != want {
		t.Errorf("order app invoked %d times, want %d (the first refusal and one probe)", got, want)
	}
}

// gatedApp holds the first call after gateNext is set until release is closed.
type gatedApp struct {
	*orderApp
	gateNext atomic.Bool
	once     sync.Once
	entered  chan struct{}
	release  chan struct{}
}

func (g *gatedApp) Raw(ctx context.Context, app, method, path string, hdr http.Header, body []byte) (*sidecar.Response, error) {
	if g.gateNext.Load() {
		g.once.Do(func() { close(g.entered) })
		<-g.release
	}
	return g.orderApp.Raw(ctx, app, method, path, hdr, body)
}
