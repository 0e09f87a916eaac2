package ratelimit_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/ratelimit"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	proxies, err := ratelimit.ParseProxies("10.0.0.0/8, 192.168.1.7")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, peer, xff, realIP, want string
	}{
		{"direct client, headers ignored", "203.0.113.9:5000", "1.2.3.4", "5.6.7.8", "203.0.113.9"},
		{"through the proxy", "10.1.2.3:40000", "198.51.100.4", "", "198.51.100.4"},
		{"client-written entries left of the proxy's are ignored", "10.1.2.3:40000", "6.6.6.6, 198.51.100.4", "", "198.51.100.4"},
		{"a chain of trusted proxies", "10.1.2.3:40000", "198.51.100.4, 192.168.1.7, 10.9.9.9", "", "198.51.100.4"},
		{"only trusted hops: the peer", "10.1.2.3:40000", "10.2.2.2", "", "10.1.2.3"},
		{"garbage from the proxy: the peer", "10.1.2.3:40000", "198.51.100.4, not-an-ip", "", "10.1.2.3"},
		{"X-Real-IP without X-Forwarded-For", "192.168.1.7:1", "", "198.51.100.5", "198.51.100.5"},
		{"no header: the proxy itself", "10.1.2.3:40000", "", "", "10.1.2.3"},
		{"IPv6 client", "10.1.2.3:40000", "2001:db8::1", "", "2001:db8::1"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if tc.realIP != "" {
			r.Header.Set("X-Real-IP", tc.realIP)
		}
		if got := ratelimit.ClientIP(r, proxies); got != tc.want {
			t.Errorf("%s: ClientIP = %q, want %q", tc.name, got, tc.want)
		}
	}
	if _, err := ratelimit.ParseProxies("10.0.0.0/8,nonsense"); err == nil {
		t.Error("ParseProxies accepted nonsense")
	}
}

// With Redis down, browsing goes through and the account routes are refused.
func TestRedisDownFailsOpenExceptStrict(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	rule := ratelimit.Rule{Rate: 10, Burst: 10, Period: time.Second}
	l := ratelimit.New(redis_rate.NewLimiter(rdb), "t:", rule, rule, slog.New(slog.DiscardHandler), noop.NewMeterProvider().Meter("t"))
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })

	w := httptest.NewRecorder()
	l.PerIP(ok).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/v1/deals/1", nil))
	if w.Code != http.StatusNoContent {
		t.Errorf("PerIP with Redis down = %d, want the request through", w.Code)
	}
	w = httptest.NewRecorder()
	l.PerIPStrict(ok).ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/v1/auth/login", nil))
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Errorf("PerIPStrict with Redis down = %d (Retry-After %q), want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
}
