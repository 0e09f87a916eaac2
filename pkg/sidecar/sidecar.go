// Package sidecar wires an app to its Dapr sidecar: the go-sdk client (gRPC, with trace
// propagation and the sidecar API token), HTTP service invocation that relays problem
// documents, the check of Dapr's app API token on inbound calls, and the sidecar health probe.
package sidecar

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Config locates the sidecar. The Dapr CLI, the project's launcher and the Kubernetes injector
// all set these variables.
type Config struct {
	Host     string `env:"DAPR_HOST, default=127.0.0.1"`
	HTTPPort int    `env:"DAPR_HTTP_PORT, default=3500"`
	GRPCPort int    `env:"DAPR_GRPC_PORT, default=50001"`
	// APIToken is sent to the sidecar (dapr-api-token); the go-sdk reads it from the same variable.
	APIToken string `env:"DAPR_API_TOKEN"`
	// AppAPIToken is what the sidecar sends to this app; inbound calls must carry it.
	AppAPIToken string `env:"APP_API_TOKEN"`
	// InvokeTimeouts bound each service invocation by target app id, retries by the sidecar
	// included; InvokeTimeout bounds calls to any other app. They live here, on the caller,
	// and not as `timeout` policies on the resiliency app targets: daprd 1.16 runs a timed
	// invocation attempt in a goroutine of its own, and one that answers after the timeout
	// writes to a response that is already finished, which crashes the sidecar (nil pointer
	// in net/http's flush from directmessaging.go; seen under load in the bench). A deadline
	// on the caller's request cancels the sidecar's handler context instead, and with it
	// the attempt.
	InvokeTimeouts map[string]time.Duration `env:"INVOKE_TIMEOUTS, default=catalog:5s,inventory:2s,payment:2s,order:5s,group:5s"`
	InvokeTimeout  time.Duration            `env:"INVOKE_TIMEOUT, default=5s"`
}

// InvokeTimeoutFor is the bound of one invocation of app.
func (c Config) InvokeTimeoutFor(app string) time.Duration {
	if d, ok := c.InvokeTimeouts[app]; ok && d > 0 {
		return d
	}
	return c.InvokeTimeout
}

// HTTPBase is the sidecar's HTTP API root.
func (c Config) HTTPBase() string {
	return "http://" + net.JoinHostPort(c.Host, strconv.Itoa(c.HTTPPort))
}

// NewClient returns a go-sdk client over a lazily connecting gRPC channel, so an app can start
// serving (and pass the sidecar's app-port probe) before its sidecar is up. otelgrpc forwards
// the trace context to the sidecar as gRPC metadata.
func NewClient(c Config) (dapr.Client, error) {
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
		// A call made before the sidecar listens (a background loop at startup) puts the
		// channel into reconnect backoff, and every call fails at once until the next
		// attempt: gRPC's default first delay is a second, long enough to fail the first
		// requests the sidecar forwards. The sidecar is on loopback: retry soon, and never
		// wait long (CI saw a call fail with "connection refused" half a second after the
		// sidecar listened, the channel still in a backoff grown to a second).
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond,
			Multiplier: 1.6, Jitter: 0.2, MaxDelay: 100 * time.Millisecond}, MinConnectTimeout: time.Second}),
	}
	if c.APIToken != "" {
		// The go-sdk adds its token interceptor only to connections it dials itself.
		opts = append(opts,
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, o ...grpc.CallOption) error {
				return invoker(metadata.AppendToOutgoingContext(ctx, "dapr-api-token", c.APIToken), method, req, reply, cc, o...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, o ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(metadata.AppendToOutgoingContext(ctx, "dapr-api-token", c.APIToken), desc, cc, method, o...)
			}),
		)
	}
	conn, err := grpc.NewClient(net.JoinHostPort(c.Host, strconv.Itoa(c.GRPCPort)), opts...)
	if err != nil {
		return nil, fmt.Errorf("dapr grpc channel: %w", err)
	}
	return dapr.NewClientWithConnection(conn), nil
}

// Healthy asks the sidecar whether it is ready (GET /v1.0/healthz answers 204).
func Healthy(ctx context.Context, c Config, hc *http.Client) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.HTTPBase()+"/v1.0/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("dapr sidecar: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("dapr sidecar: healthz answered %d", resp.StatusCode)
	}
	return nil
}

// RequireAppToken rejects calls that do not carry the app API token the sidecar was given
// (APP_API_TOKEN), so only the sidecar can call the app. With no token configured it lets
// every call through (local runs without tokens). Health endpoints stay open for probes.
func RequireAppToken(token string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if token == "" {
			return next
		}
		want := []byte(token)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
				next.ServeHTTP(w, r)
				return
			}
			got := []byte(r.Header.Get("dapr-api-token"))
			if subtle.ConstantTimeCompare(got, want) != 1 {
				problem.Write(w, r, problem.New(problem.CodeUnauthorized, "missing or wrong dapr-api-token"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// DefaultHTTPClient is the client used for sidecar HTTP calls; the per-call timeout comes from
// the caller's context (for invocations, Config.InvokeTimeouts), this is only a backstop.
func DefaultHTTPClient(rt http.RoundTripper) *http.Client {
	return &http.Client{Transport: rt, Timeout: 30 * time.Second}
}
