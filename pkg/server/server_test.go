package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/server"
)

func newRouter(ready server.ReadyCheck, mws ...func(http.Handler) http.Handler) http.Handler {
	r := server.NewRouter(slog.New(slog.DiscardHandler), ready, mws...)
	r.Get("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "fine") })
	r.Get("/boom", func(http.ResponseWriter, *http.Request) { panic("kaboom") })
	r.Post("/things", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusCreated) })
	return r
}

func ready(context.Context) error { return nil }

func TestRouter(t *testing.T) {
	t.Parallel()
	notReady := func(context.Context) error { return errors.New("sidecar unreachable") }
	tests := []struct {
		name       string
		ready      server.ReadyCheck
		method     string
		path       string
		wantStatus int
		wantBody   string       // plain bodies
		wantCode   problem.Code // problem bodies
	}{
		{name: "route", ready: ready, method: http.MethodGet, path: "/ok", wantStatus: http.StatusOK, wantBody: "fine"},
		{name: "panic becomes a 500 problem", ready: ready, method: http.MethodGet, path: "/boom", wantStatus: http.StatusInternalServerError, wantCode: problem.CodeInternal},
		{name: "unknown path is a 404 problem", ready: ready, method: http.MethodGet, path: "/nope", wantStatus: http.StatusNotFound, wantCode: problem.CodeNotFound},
		{name: "wrong method is a 405 problem", ready: ready, method: http.MethodDelete, path: "/things", wantStatus: http.StatusMethodNotAllowed, wantCode: problem.CodeMethodNotAllowed},
		{name: "healthz", ready: notReady, method: http.MethodGet, path: "/healthz", wantStatus: http.StatusOK, wantBody: "ok\n"},
		{name: "readyz when ready", ready: ready, method: http.MethodGet, path: "/readyz", wantStatus: http.StatusOK, wantBody: "ready\n"},
		{name: "readyz when a check fails", ready: notReady, method: http.MethodGet, path: "/readyz", wantStatus: http.StatusServiceUnavailable, wantCode: problem.CodeUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()

			newRouter(tt.ready).ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))

			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", got, tt.wantStatus, rec.Body.String())
			}
			if tt.wantCode == "" {
				if got := rec.Body.String(); got != tt.wantBody {
					t.Errorf("body = %q, want %q", got, tt.wantBody)
				}
				return
			}
			if got := rec.Header().Get("Content-Type"); got != problem.ContentType {
				t.Errorf("Content-Type = %q, want %q", got, problem.ContentType)
			}
			var doc problem.Document
			if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
				t.Fatalf("decode problem %q: %v", rec.Body.String(), err)
			}
			if doc.Code != tt.wantCode || doc.Status != tt.wantStatus {
				t.Errorf("problem code, status = %q, %d, want %q, %d", doc.Code, doc.Status, tt.wantCode, tt.wantStatus)
			}
			if tt.wantCode == problem.CodeInternal && doc.Detail != "an unexpected error occurred" {
				t.Errorf("panic detail = %q, want the generic message (no panic value leaked)", doc.Detail)
			}
			if tt.path == "/readyz" && (doc.Detail != "not ready" || strings.Contains(rec.Body.String(), "sidecar")) {
				t.Errorf("readyz detail = %q, want only \"not ready\" (the reason goes to the log)", doc.Detail)
			}
		})
	}
}

func TestRouterRequestID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		incoming string
		path     string
	}{
		{name: "generated", path: "/ok"},
		{name: "caller's id is kept", incoming: "req-from-caller-42", path: "/ok"},
		{name: "set on problem responses too", path: "/nope"},
		{name: "set on a recovered panic", path: "/boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodGet, tt.path, nil)
			if tt.incoming != "" {
				req.Header.Set("X-Request-Id", tt.incoming)
			}
			rec := httptest.NewRecorder()

			newRouter(ready).ServeHTTP(rec, req)

			got := rec.Header().Get("X-Request-Id")
			switch {
			case tt.incoming != "" && got != tt.incoming:
				t.Errorf("X-Request-Id = %q, want %q", got, tt.incoming)
			case got == "":
				t.Error("X-Request-Id is missing")
			}
		})
	}
}

func TestRouterExtraMiddlewareRunsOnRoutes(t *testing.T) {
	t.Parallel()
	var seen []string
	mw := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen = append(seen, r.URL.Path)
			next.ServeHTTP(w, r)
		})
	}
	h := newRouter(ready, mw)

	for _, p := range []string{"/ok", "/healthz"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}

	if diff := cmp.Diff(seen, []string{"/ok", "/healthz"}); diff != "" {
		t.Errorf("paths seen by the middleware mismatch (-got +want):\n%s", diff)
	}
}

func TestRunShutsDownWhenContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	cfg := server.Config{ListenHost: "127.0.0.1", Port: 0, AdminPort: 0, ShutdownTimeout: 5 * time.Second}

	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, slog.New(slog.DiscardHandler), http.NotFoundHandler(), http.NotFoundHandler())
	}()

	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v, want nil after a clean shutdown", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
}

func TestRunListenError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	cfg := server.Config{ListenHost: "127.0.0.1", Port: port, AdminPort: 0, ShutdownTimeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	err = server.Run(ctx, cfg, slog.New(slog.DiscardHandler), http.NotFoundHandler(), http.NotFoundHandler())

	if err == nil {
		t.Fatalf("Run() on a taken port %d = nil, want a listen error", port)
	}
}

func TestConfigAddr(t *testing.T) {
	t.Parallel()
	cfg := server.Config{ListenHost: "0.0.0.0", Port: 8081, AdminPort: 9191}
	if got, want := cfg.Addr(), "0.0.0.0:"+strconv.Itoa(8081); got != want {
		t.Errorf("Addr() = %q, want %q", got, want)
	}
	if got, want := cfg.AdminAddr(), "0.0.0.0:9191"; got != want {
		t.Errorf("AdminAddr() = %q, want %q", got, want)
	}
}

// The profiler is served only when asked for; /metrics always.
func TestAdminHandlerPprofOnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("m 1\n")) })
	for _, on := range []bool{false, true} {
		h := server.AdminHandler(metrics, on)
		for path, want := range map[string]int{"/metrics": http.StatusOK, "/debug/pprof/": http.StatusNotFound, "/debug/pprof/cmdline": http.StatusNotFound} {
			if on && path != "/metrics" {
				want = http.StatusOK
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			if w.Code != want {
				t.Errorf("pprof %t: GET %s = %d, want %d", on, path, w.Code, want)
			}
		}
	}
}

// A client that sends headers and then trickles (here: withholds) its body is cut off after
// ReadTimeout.
func TestRunCutsSlowBodies(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := server.Config{ListenHost: "127.0.0.1", Port: port, AdminPort: 0, ShutdownTimeout: time.Second, ReadTimeout: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusRequestTimeout)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	go func() { _ = server.Run(ctx, cfg, slog.New(slog.DiscardHandler), body, http.NotFoundHandler()) }()
	var conn net.Conn
	for range 100 {
		if conn, err = net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.ReadAll(conn) // ends when the server closes the connection
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("a withheld body kept the connection %v, want it cut after the 300ms read timeout", d)
	}
}
