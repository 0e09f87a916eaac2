// Command fakeapp stands in for a groupbuy app in the devstack integration test: an HTTP
// server on 127.0.0.1:$APP_PORT that answers /healthz and /readyz, checks the dapr-api-token
// daprd sends, and can use its sidecar's state API and invoke another app through it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		log.Printf("fakeapp: %v", err)
		os.Exit(1)
	}
}

func run(ctx context.Context) error {
	sidecar := "http://127.0.0.1:" + os.Getenv("DAPR_HTTP_PORT")
	appToken := os.Getenv("APP_API_TOKEN")
	daprToken := os.Getenv("DAPR_API_TOKEN")
	var badTokens atomic.Int64
	client := &http.Client{Timeout: 10 * time.Second}

	// call sends a request to the sidecar with the API token and returns status and body.
	call := func(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, method, sidecar+path, bytes.NewReader(body))
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("dapr-api-token", daprToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}

	mux := http.NewServeMux()
	// Requests from daprd carry APP_API_TOKEN; count the ones that do not.
	fromDaprd := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if appToken != "" && r.Header.Get("dapr-api-token") != appToken {
				badTokens.Add(1)
				http.Error(w, "bad dapr-api-token", http.StatusUnauthorized)
				return
			}
			h(w, r)
		}
	}
	// daprd 1.16 sends no dapr-api-token with its app health probes, so /healthz cannot ask for it.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("POST /echo", fromDaprd(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}))
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]string{}
		for _, k := range []string{"APP_ID", "APP_PORT", "DAPR_HTTP_PORT", "DAPR_GRPC_PORT", "DAPR_METRICS_PORT",
			"APP_PROTOCOL", "ADMIN_PORT", "LISTEN_HOST", "FAKE_EXTRA"} {
			out[k] = os.Getenv(k)
		}
		out["BAD_TOKENS"] = fmt.Sprint(badTokens.Load())
		_ = json.NewEncoder(w).Encode(out)
	})
	// PUT /state/{key} saves the body under key in the "statestore" component and reads it back.
	mux.HandleFunc("PUT /state/{key}", func(w http.ResponseWriter, r *http.Request) {
		key := r.PathValue("key")
		value, _ := io.ReadAll(r.Body)
		payload, _ := json.Marshal([]map[string]any{{"key": key, "value": string(value)}})
		if st, b, err := call(r.Context(), http.MethodPost, "/v1.0/state/statestore", payload); err != nil || st != http.StatusNoContent {
			http.Error(w, fmt.Sprintf("save: %d %s %v", st, b, err), http.StatusBadGateway)
			return
		}
		st, b, err := call(r.Context(), http.MethodGet, "/v1.0/state/statestore/"+key, nil)
		if err != nil || st != http.StatusOK {
			http.Error(w, fmt.Sprintf("get: %d %s %v", st, b, err), http.StatusBadGateway)
			return
		}
		_, _ = w.Write(b)
	})
	mux.HandleFunc("DELETE /state/{key}", func(w http.ResponseWriter, r *http.Request) {
		st, b, err := call(r.Context(), http.MethodDelete, "/v1.0/state/statestore/"+r.PathValue("key"), nil)
		if err != nil || st != http.StatusNoContent {
			http.Error(w, fmt.Sprintf("delete: %d %s %v", st, b, err), http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	// POST /invoke/{app} calls that app's /echo through both sidecars: name resolution
	// (the target's sidecar is found through the config's template) and both API tokens.
	mux.HandleFunc("POST /invoke/{app}", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		st, b, err := call(r.Context(), http.MethodPost, "/v1.0/invoke/"+r.PathValue("app")+"/method/echo", body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.WriteHeader(st)
		_, _ = w.Write(b)
	})

	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("APP_PORT"), Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Printf("fakeapp %s listening on %s", os.Getenv("APP_ID"), srv.Addr)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
