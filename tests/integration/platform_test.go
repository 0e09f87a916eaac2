//go:build integration

package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// TestSmokeTraceSpansGatewayCatalogInventory follows one GET /deals/{id} through the gateway,
// both hops of Dapr service invocation and the two internal apps: all spans must share one
// trace id, and the sidecars must have taken part in it (W3C traceparent through Dapr).
func TestSmokeTraceSpansGatewayCatalogInventory(t *testing.T) {
	admin := stack.Admin(t)
	p := createProduct(t, admin)
	var d createdDeal
	admin.MustDo(t, http.MethodPost, "/deals", flashDealBody(p.ID, 7), http.StatusCreated, &d)
	stack.NewClient().MustDo(t, http.MethodGet, "/deals/"+d.ID, nil, http.StatusOK, nil)

	path := "/api/v1/deals/" + d.ID
	// Apps and sidecars export in batches, each on its own schedule: wait until the trace is
	// complete (or the deadline passes), then report what is missing.
	var trace []harness.Span
	var problems []string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		trace = traceOf(otlp.Spans(), func(s harness.Span) bool {
			return s.Service == "gateway" && s.Scope != daprScope && strings.Contains(s.Attrs["url.path"]+s.Attrs["http.target"], path)
		})
		if problems = traceProblems(trace); len(problems) == 0 {
			break
		}
	}
	if len(trace) == 0 {
		t.Fatalf("no gateway span for %s among %d received spans", path, len(otlp.Spans()))
	}
	for _, p := range problems {
		t.Error(p)
	}
	if len(problems) > 0 {
		t.Logf("trace %s: %s", trace[0].TraceID, describe(trace))
	}
}

// traceProblems lists what keeps trace from being one complete trace of the request: spans
// from the three apps, both invocation hops seen by both sidecars of each hop, every parent
// inside the trace, and exactly one root.
func traceProblems(trace []harness.Span) []string {
	var out []string
	for _, app := range []string{"gateway", "catalog", "inventory"} {
		if !services(trace)[app] {
			out = append(out, "no span from "+app)
		}
	}
	hops := map[string]bool{}
	for _, s := range sidecarSpans(trace) {
		if strings.HasPrefix(s.Name, "CallLocal/") {
			hops[s.Service+" "+strings.SplitN(s.Name, "/", 3)[1]] = true
		}
	}
	for _, hop := range []string{"gateway catalog", "catalog catalog", "catalog inventory", "inventory inventory"} {
		if !hops[hop] {
			f := strings.Fields(hop)
			out = append(out, fmt.Sprintf("no sidecar span of %s's daprd invoking %s", f[0], f[1]))
		}
	}
	ids := map[string]bool{}
	for _, s := range trace {
		ids[s.SpanID] = true
	}
	roots := 0
	for _, s := range trace {
		if s.ParentID == "" || s.ParentID == strings.Repeat("0", 16) {
			roots++
		} else if !ids[s.ParentID] {
			out = append(out, fmt.Sprintf("span %q of %s has parent %s outside the trace", s.Name, s.Service, s.ParentID))
		}
	}
	if roots != 1 {
		out = append(out, fmt.Sprintf("%d root spans, want 1", roots))
	}
	return out
}

// traceOf returns every span of the trace that holds a span matching first.
func traceOf(spans []harness.Span, first func(harness.Span) bool) []harness.Span {
	id := ""
	for _, s := range spans {
		if first(s) {
			id = s.TraceID
			break
		}
	}
	var out []harness.Span
	for _, s := range spans {
		if id != "" && s.TraceID == id {
			out = append(out, s)
		}
	}
	return out
}

func services(spans []harness.Span) map[string]bool {
	m := map[string]bool{}
	for _, s := range spans {
		if s.Scope != daprScope {
			m[s.Service] = true
		}
	}
	return m
}

// daprScope is the instrumentation scope of the spans daprd emits.
const daprScope = "dapr-diagnostics"

// sidecarSpans are the spans daprd emitted.
func sidecarSpans(spans []harness.Span) []harness.Span {
	var out []harness.Span
	for _, s := range spans {
		if s.Scope == daprScope {
			out = append(out, s)
		}
	}
	return out
}

func describe(spans []harness.Span) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "\n  %s [%s] %q span=%s parent=%s", s.Service, s.Scope, s.Name, s.SpanID, s.ParentID)
	}
	return b.String()
}

// TestSmokeMetricsAndPprof checks every app serves Prometheus metrics and pprof on its admin
// listener, and that the metrics saw the API traffic.
func TestSmokeMetricsAndPprof(t *testing.T) {
	stack.NewClient().MustDo(t, http.MethodGet, "/deals", nil, http.StatusOK, nil)
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, app := range stack.Plan.Apps {
		t.Run(app.AppID, func(t *testing.T) {
			base := stack.AdminURL(app.AppID)
			body := get(t, hc, base+"/metrics")
			for _, want := range []string{"go_goroutines", "target_info"} {
				if !strings.Contains(body, want) {
					t.Errorf("/metrics lacks %s", want)
				}
			}
			if !strings.Contains(get(t, hc, base+"/debug/pprof/"), "goroutine") {
				t.Errorf("pprof index lacks goroutine profile")
			}
		})
	}
	if body := get(t, hc, stack.AdminURL("gateway")+"/metrics"); !strings.Contains(body, "http_server_request") {
		t.Errorf("gateway metrics lack the otelhttp server metrics")
	}
}

func get(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	resp, err := hc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// TestSmokeInternalAppsRequireAppToken calls internal apps directly, bypassing their sidecars:
// without Dapr's app API token they refuse.
func TestSmokeInternalAppsRequireAppToken(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, app := range []string{"catalog", "inventory"} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, stack.App(app).AppURL()+"/deals", nil)
		if app == "inventory" {
			req, _ = http.NewRequestWithContext(ctx, http.MethodGet, stack.App(app).AppURL()+"/stock/x", nil)
		}
		req.Header.Set("X-User-Role", "admin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without app token: %d, want 401", app, resp.StatusCode)
		}
	}
}

// TestRateLimits runs a gateway with tight limits: a user over the per-user limit and a client
// over the per-IP limit get 429 rate-limited with Retry-After; the counters live in Redis
// under the stack's prefix.
func TestRateLimits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := harness.StartForTest(t, infra, harness.Options{
		Name: "ratelimit",
		Apps: []string{"gateway", "catalog"},
		Env: map[string]string{
			"RATE_LIMIT_PERIOD": "1m",
			"RATE_LIMIT_USER":   "3", "RATE_LIMIT_USER_BURST": "3",
			"RATE_LIMIT_IP": "30", "RATE_LIMIT_IP_BURST": "30",
		},
	})
	began := time.Now()
	user, _ := s.NewUser(t) // 2 requests on the IP budget

	statuses := func(c *harness.Client, method, path string, body func(i int) any, n int) (ok, limited int, last *harness.Response) {
		for i := range n {
			resp, err := c.Do(ctx, method, path, body(i), nil)
			if err != nil {
				t.Fatal(err)
			}
			switch resp.Status {
			case http.StatusTooManyRequests:
				limited++
				last = resp
			default:
				ok++
			}
		}
		return ok, limited, last
	}
	// Per user: 3 per minute (allowed requests get 404: there is no such product).
	ok, limited, last := statuses(user, http.MethodGet, "/products/none", func(int) any { return nil }, 6)
	if ok != 3 || limited != 3 {
		t.Fatalf("per-user: %d through, %d limited; want 3 and 3", ok, limited)
	}
	checkLimited(t, last, "user")

	// Per IP: 30 per minute in all, shared by every client of this address.
	// Failed logins are cheap and need no other app; each of another username, so the
	// per-account backoff on failed logins never counts.
	anon := s.NewClient()
	ok, limited, last = statuses(anon, http.MethodPost, "/auth/login", func(i int) any {
		return map[string]string{"username": fmt.Sprintf("nobody-%d", i), "password": "wrong-password"}
	}, 30)
	// 8 requests of the budget went to the user above; the budget refills by one every 2s
	// (30 per minute), so a slow run may see a few more through, never many.
	refills := int(time.Since(began)/(2*time.Second)) + 1
	if limited == 0 || ok < 22 || ok > 22+refills {
		t.Fatalf("per-ip: %d through, %d limited; want 22 (+ at most %d refilled) through and the rest limited", ok, limited, refills)
	}
	checkLimited(t, last, "ip")

	keys, err := s.Redis.Keys(ctx, "*"+s.KeyPrefix+"rate:*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) < 2 {
		t.Errorf("rate-limit keys in Redis %v, want a user and an ip counter", keys)
	}
}

func checkLimited(t *testing.T, resp *harness.Response, scope string) {
	t.Helper()
	if resp == nil {
		t.Fatalf("%s: no limited response", scope)
	}
	if code := resp.Problem().Code; code != "rate-limited" {
		t.Errorf("%s: code %q, want rate-limited", scope, code)
	}
	if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
		t.Errorf("%s: Retry-After %q, want a positive number of seconds", scope, ra)
	}
}
