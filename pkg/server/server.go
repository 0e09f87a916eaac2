// Package server runs an app's HTTP listeners: the API router (chi with request ids, panic
// recovery, OpenTelemetry spans, access logs, /healthz and /readyz) and the admin listener
// (Prometheus /metrics and pprof), with graceful shutdown when the context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Config holds the listener settings shared by every app.
type Config struct {
	// ListenHost is 127.0.0.1 locally; a pod sets 0.0.0.0 so its sidecar and probes reach it.
	ListenHost      string        `env:"LISTEN_HOST, default=127.0.0.1"`
	Port            int           `env:"APP_PORT, default=8080"`
	AdminPort       int           `env:"ADMIN_PORT, default=9190"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT, default=15s"`
	// ReadTimeout bounds reading a whole request, body included (a client trickling a body
	// holds a goroutine and a connection no longer); IdleTimeout closes idle keep-alive
	// connections. Neither limits a response, so live streams are not cut. Zero takes the
	// default.
	ReadTimeout time.Duration `env:"READ_TIMEOUT, default=30s"`
	IdleTimeout time.Duration `env:"IDLE_TIMEOUT, default=2m"`
	// Pprof serves the Go profiler on the admin listener (/debug/pprof/); off unless asked:
	// a profile or trace costs CPU, and the command line and heap it exposes are nobody's
	// business in production.
	Pprof bool `env:"PPROF, default=false"`
}

// Addr is the API listener address.
func (c Config) Addr() string { return net.JoinHostPort(c.ListenHost, strconv.Itoa(c.Port)) }

// AdminAddr is the admin listener address.
func (c Config) AdminAddr() string { return net.JoinHostPort(c.ListenHost, strconv.Itoa(c.AdminPort)) }

// ReadyCheck reports whether the app can serve (its sidecar and stores reachable).
type ReadyCheck func(ctx context.Context) error

// NewRouter returns a chi router with the common middleware, then mws, and the health
// endpoints mounted.
func NewRouter(log *slog.Logger, ready ReadyCheck, mws ...func(http.Handler) http.Handler) chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.RequestID)
	r.Use(requestIDHeader)
	r.Use(otelMiddleware)
	r.Use(accessLog(log))
	r.Use(recoverer(log))
	r.Use(mws...)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.Errorf(problem.CodeNotFound, "no route for %s", r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.Errorf(problem.CodeMethodNotAllowed, "%s is not allowed on %s", r.Method, r.URL.Path))
	})
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := ready(ctx); err != nil {
			// The reason (addresses, driver errors) is for the operator's log, not for
			// whoever can reach the port.
			log.WarnContext(r.Context(), "not_ready", slog.String("reason", err.Error()))
			problem.Write(w, r, problem.New(problem.CodeUnavailable, "not ready"))
			return
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("ready\n"))
	})
	return r
}

// requestIDHeader echoes the request id so clients can quote it.
func requestIDHeader(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := middleware.GetReqID(r.Context()); id != "" {
			w.Header().Set("X-Request-Id", id)
		}
		next.ServeHTTP(w, r)
	})
}

// otelMiddleware starts a server span per request (continuing the caller's traceparent, which
// the Dapr sidecar forwards) and names it after the matched chi route once routing is done.
func otelMiddleware(next http.Handler) http.Handler {
	named := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r)
		if rc := chi.RouteContext(r.Context()); rc != nil {
			if pattern := rc.RoutePattern(); pattern != "" {
				trace.SpanFromContext(r.Context()).SetName(r.Method + " " + pattern)
			}
		}
	})
	return otelhttp.NewHandler(named, "http.server",
		otelhttp.WithFilter(func(r *http.Request) bool {
			return r.URL.Path != "/healthz" && r.URL.Path != "/readyz"
		}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.URL.Path }),
	)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Flush keeps streaming responses (SSE) working through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				next.ServeHTTP(w, r)
				return
			}
			start := time.Now()
			rec := &statusRecorder{ResponseWriter: w}
			next.ServeHTTP(rec, r)
			level := slog.LevelInfo
			if rec.status >= 500 {
				level = slog.LevelError
			}
			log.Log(r.Context(), level, "http_request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", rec.status),
				slog.Int("bytes", rec.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("request_id", middleware.GetReqID(r.Context())),
			)
		})
	}
}

// recoverer turns a panic into a logged 500 problem instead of a dropped connection.
func recoverer(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				rec := recover()
				if rec == nil {
					return
				}
				if rec == http.ErrAbortHandler {
					panic(rec)
				}
				log.ErrorContext(r.Context(), "panic_recovered", slog.Any("panic", rec), slog.String("path", r.URL.Path))
				problem.Write(w, r, errors.New("panic"))
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// AdminHandler serves /metrics, and the pprof endpoints when withPprof.
func AdminHandler(metrics http.Handler, withPprof bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	if !withPprof {
		return mux
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// Run serves api and admin until ctx ends, then shuts both down gracefully. It returns the
// first listener error, or nil after a clean shutdown.
func Run(ctx context.Context, cfg Config, log *slog.Logger, api, admin http.Handler) error {
	read, idle := cfg.ReadTimeout, cfg.IdleTimeout
	if read <= 0 {
		read = 30 * time.Second
	}
	if idle <= 0 {
		idle = 2 * time.Minute
	}
	servers := []*http.Server{
		{Addr: cfg.Addr(), Handler: api, ReadHeaderTimeout: min(10*time.Second, read), ReadTimeout: read, IdleTimeout: idle},
		{Addr: cfg.AdminAddr(), Handler: admin, ReadHeaderTimeout: min(10*time.Second, read), ReadTimeout: read, IdleTimeout: idle},
	}
	// Bind every listener before serving any, so a bind failure leaves nothing running.
	listeners := make([]net.Listener, 0, len(servers))
	for _, srv := range servers {
		ln, err := net.Listen("tcp", srv.Addr)
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
			return fmt.Errorf("listen %s: %w", srv.Addr, err)
		}
		listeners = append(listeners, ln)
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		ln := listeners[i]
		log.Info("listening", slog.String("addr", srv.Addr))
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", srv.Addr, err)
			}
		}()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("shutting_down")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", srv.Addr, err))
		}
	}
	return errors.Join(append([]error{serveErr}, errs...)...)
}
