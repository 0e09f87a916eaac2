//go:build integration

package integration

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/tests/harness"
)

// TestPerIPLimitBehindATrustedProxy: a gateway that trusts one proxy (127.0.0.1) keys its
// per-IP limit on the client that proxy names in X-Forwarded-For, so two shoppers behind it
// have buckets of their own; a client connecting directly (from 127.0.0.2) cannot pick a bucket
// by writing the header itself.
func TestPerIPLimitBehindATrustedProxy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gw, err := stack.StartReplica(ctx, "gateway", map[string]string{
		"TRUSTED_PROXIES":       "127.0.0.1",
		"RATE_LIMIT_IP":         "3",
		"RATE_LIMIT_IP_BURST":   "3",
		"RATE_LIMIT_PERIOD":     "1m",
		"RATE_LIMIT_KEY_PREFIX": harness.UniqueName("xff") + ":",
	})
	if err != nil {
		t.Fatal(err)
	}
	from := func(src string) *harness.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		return &harness.Client{Base: gw.AppURL() + "/api/v1", HC: &http.Client{
			Timeout:   10 * time.Second,
			Transport: &http.Transport{DialContext: d.DialContext},
		}}
	}
	get := func(c *harness.Client, xff string) int {
		t.Helper()
		resp, err := c.Do(ctx, http.MethodGet, "/products/abc", nil, map[string]string{"X-Forwarded-For": xff})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	count := func(c *harness.Client, n int, xff func(i int) string) (ok, limited int) {
		for i := range n {
			switch st := get(c, xff(i)); st {
			case http.StatusNotFound: // through the limiter: an unknown product
				ok++
			case http.StatusTooManyRequests:
				limited++
			default:
				t.Fatalf("status %d", st)
			}
		}
		return ok, limited
	}

	proxy := from("127.0.0.1")
	if ok, limited := count(proxy, 5, func(int) string { return "198.51.100.1" }); ok != 3 || limited != 2 {
		t.Errorf("shopper 1 behind the proxy: %d through, %d limited; want 3 and 2", ok, limited)
	}
	if ok, _ := count(proxy, 3, func(int) string { return "6.6.6.6, 198.51.100.2" }); ok != 3 {
		t.Errorf("shopper 2 behind the proxy (a forged entry left of the proxy's): %d of 3 through, want a bucket of its own", ok)
	}
	if ok, _ := count(proxy, 1, func(int) string { return "198.51.100.2, 198.51.100.1" }); ok != 0 {
		t.Error("the proxy's rightmost entry (shopper 1, exhausted) was not the key")
	}

	direct := from("127.0.0.2")
	ok, limited := count(direct, 6, func(i int) string { return "203.0.113." + string(rune('1'+i)) })
	if ok != 3 || limited != 3 {
		t.Errorf("direct client forging X-Forwarded-For: %d through, %d limited; want 3 and 3 (one bucket, its own address)", ok, limited)
	}
}

// TestLoginBacksOffPerAccount: after 5 failed logins of one account (the default rule), even
// the right password is refused with 429 and a Retry-After, from any address; another account
// is untouched. A registration flood from one address is cut at the register rule.
func TestLoginBacksOffPerAccount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	victim := harness.UniqueName("victim")
	stack.NewClient().MustDo(t, http.MethodPost, "/auth/register", map[string]string{"username": victim, "password": "right-horse-battery"}, http.StatusCreated, nil)
	login := func(user, pw string) *harness.Response {
		t.Helper()
		resp, err := stack.NewClient().Do(ctx, http.MethodPost, "/auth/login", map[string]string{"username": user, "password": pw}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i := range 5 {
		if resp := login(victim, "wrong-guess-"+string(rune('a'+i))); resp.Status != http.StatusUnauthorized {
			t.Fatalf("failed login %d = %d, want 401", i+1, resp.Status)
		}
	}
	resp := login(victim, "right-horse-battery")
	if resp.Status != http.StatusTooManyRequests || resp.Problem().Code != "rate-limited" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("login after 5 failures = %d %s (Retry-After %q), want 429 rate-limited with Retry-After", resp.Status, resp.Body, resp.Header.Get("Retry-After"))
	}
	other := harness.UniqueName("other")
	stack.NewClient().MustDo(t, http.MethodPost, "/auth/register", map[string]string{"username": other, "password": "another-horse-battery"}, http.StatusCreated, nil)
	if resp := login(other, "another-horse-battery"); resp.Status != http.StatusOK {
		t.Errorf("another account's login = %d, want 200", resp.Status)
	}

	gw, err := stack.StartReplica(ctx, "gateway", map[string]string{"RATE_LIMIT_REGISTER": "2", "RATE_LIMIT_KEY_PREFIX": harness.UniqueName("reg") + ":"})
	if err != nil {
		t.Fatal(err)
	}
	c := &harness.Client{Base: gw.AppURL() + "/api/v1", HC: &http.Client{Timeout: 10 * time.Second}}
	var statuses []int
	for range 3 {
		resp, err := c.Do(ctx, http.MethodPost, "/auth/register", map[string]string{"username": harness.UniqueName("flood"), "password": "a-long-passphrase"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		statuses = append(statuses, resp.Status)
	}
	if statuses[0] != http.StatusCreated || statuses[1] != http.StatusCreated || statuses[2] != http.StatusTooManyRequests {
		t.Errorf("three registrations from one address under a limit of 2: %v, want [201 201 429]", statuses)
	}
}
