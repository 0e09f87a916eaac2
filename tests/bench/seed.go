package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// api speaks the public API (the gateway's /api/v1) for seeding and checks, outside the
// measured phases.
type api struct {
	base string
	hc   *http.Client
}

func newAPI(base string) *api {
	return &api{base: base, hc: &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
}

// do sends a JSON request; want is the expected status, out (optional) receives the body.
func (a *api) do(ctx context.Context, method, path, token string, hdr map[string]string, in any, want int, out any) error {
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(data))
	}
	if out != nil {
		return json.Unmarshal(data, out)
	}
	return nil
}

// User is a seeded shopper with a valid access token.
type User struct {
	ID    string
	Name  string
	Token string
}

func (a *api) login(ctx context.Context, name, password string) (string, error) {
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err := a.do(ctx, http.MethodPost, "/auth/login", "", nil, map[string]string{"username": name, "password": password}, http.StatusOK, &tok)
	return tok.AccessToken, err
}

// devSecrets are the dev profile's secrets (the admin password, the JWT signing key).
func devSecrets(repoRoot string) (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "dapr", "secrets.dev.json"))
	if err != nil {
		return nil, err
	}
	var m map[string]string
	return m, json.Unmarshal(data, &m)
}

var userSeq atomic.Int64

// registerUsers registers and logs in n users, conc at a time.
func (a *api) registerUsers(ctx context.Context, n, conc int, prefix string) ([]User, error) {
	out := make([]User, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			name := fmt.Sprintf("%s%d-%d", prefix, time.Now().UnixNano()%1_000_000_000, userSeq.Add(1))
			const pw = "bench-password-1"
			var reg struct {
				UserID string `json:"user_id"`
			}
			if err := a.do(ctx, http.MethodPost, "/auth/register", "", nil, map[string]string{"username": name, "password": pw}, http.StatusCreated, &reg); err != nil {
				errs <- err
				return
			}
			tok, err := a.login(ctx, name, pw)
			if err != nil {
				errs <- err
				return
			}
			out[i] = User{ID: reg.UserID, Name: name, Token: tok}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return nil, err
	}
	return out, nil
}

// seeder creates products and deals as the admin.
type seeder struct {
	api   *api
	admin string // admin token
}

type createdDeal struct {
	ID              string `json:"id"`
	ProductID       string `json:"product_id"`
	Stock           int    `json:"stock"`
	GroupSize       int    `json:"group_size"`
	GroupTTLSeconds int    `json:"group_ttl_seconds"`
}

func (s *seeder) product(ctx context.Context) (string, error) {
	var p struct {
		ID string `json:"id"`
	}
	err := s.api.do(ctx, http.MethodPost, "/products", s.admin, nil,
		map[string]any{"name": "bench product", "description": "created by the benchmark harness", "price_cents": 1999}, http.StatusCreated, &p)
	return p.ID, err
}

// flashDeal creates an active flash deal of stock units, 100 per user (the catalog's cap).
func (s *seeder) flashDeal(ctx context.Context, stock int) (createdDeal, error) {
	pid, err := s.product(ctx)
	if err != nil {
		return createdDeal{}, err
	}
	now := time.Now().UTC()
	var d createdDeal
	err = s.api.do(ctx, http.MethodPost, "/deals", s.admin, nil, map[string]any{
		"product_id": pid, "kind": "flash", "price_cents": 999, "stock": stock,
		"starts_at": now.Add(-time.Minute).Format(time.RFC3339), "ends_at": now.Add(24 * time.Hour).Format(time.RFC3339),
		"per_user_limit": maxPerUser,
	}, http.StatusCreated, &d)
	return d, err
}

// groupDeal creates an active group deal (one seat per user: the catalog requires
// per_user_limit 1 on group deals).
func (s *seeder) groupDeal(ctx context.Context, stock, size int, ttl time.Duration) (createdDeal, error) {
	pid, err := s.product(ctx)
	if err != nil {
		return createdDeal{}, err
	}
	now := time.Now().UTC()
	var d createdDeal
	err = s.api.do(ctx, http.MethodPost, "/deals", s.admin, nil, map[string]any{
		"product_id": pid, "kind": "group", "price_cents": 799, "stock": stock,
		"starts_at": now.Add(-time.Minute).Format(time.RFC3339), "ends_at": now.Add(24 * time.Hour).Format(time.RFC3339),
		"per_user_limit": 1, "group_size": size, "group_ttl_seconds": int(ttl.Seconds()),
	}, http.StatusCreated, &d)
	return d, err
}

// maxPerUser is the catalog's cap on per_user_limit: one user buys at most this many units of
// a deal, so a scenario selling N units needs N/maxPerUser users.
const maxPerUser = 100
