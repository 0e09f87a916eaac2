package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Client speaks the public API as a REST client would.
type Client struct {
	Base  string
	Token string
	HC    *http.Client
}

// NewClient returns an anonymous client of the stack's gateway.
func (s *Stack) NewClient() *Client {
	return &Client{Base: s.GatewayURL(), HC: &http.Client{Timeout: 30 * time.Second}}
}

// Response is an API answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Problem is the decoded problem document of an error answer.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Code   string `json:"code"`
	Detail string `json:"detail"`
}

// Problem decodes the body as a problem document.
func (r *Response) Problem() Problem {
	var p Problem
	_ = json.Unmarshal(r.Body, &p)
	return p
}

// JSON decodes the body into v.
func (r *Response) JSON(v any) error {
	if err := json.Unmarshal(r.Body, v); err != nil {
		return fmt.Errorf("decode %s: %w", r.Body, err)
	}
	return nil
}

// Do sends a request; body may be nil, a []byte (sent raw) or a value (sent as JSON).
func (c *Client) Do(ctx context.Context, method, path string, body any, hdr map[string]string) (*Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.HC.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// MustDo is Do that fails the test on a transport error or an unexpected status.
func (c *Client) MustDo(t testing.TB, method, path string, body any, wantStatus int, out any) *Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, method, path, body, nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.Status != wantStatus {
		t.Fatalf("%s %s: status %d, want %d; body %s", method, path, resp.Status, wantStatus, resp.Body)
	}
	if out != nil {
		if err := resp.JSON(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp
}

var userSeq atomic.Int64

// UniqueName returns a username nobody else in this run uses.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s%d-%d", prefix, time.Now().UnixNano()%1_000_000_000, userSeq.Add(1))
}

// Login logs in and returns a client holding the token.
func (s *Stack) Login(t testing.TB, username, password string) *Client {
	t.Helper()
	c := s.NewClient()
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	c.MustDo(t, http.MethodPost, "/auth/login", map[string]string{"username": username, "password": password}, http.StatusOK, &tok)
	if tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.ExpiresIn <= 0 {
		t.Fatalf("login answer %+v", tok)
	}
	c.Token = tok.AccessToken
	return c
}

// NewUser registers a fresh user and returns a logged-in client and the user id.
func (s *Stack) NewUser(t testing.TB) (*Client, string) {
	t.Helper()
	name, pw := UniqueName("u"), "password-123"
	var reg struct {
		UserID   string `json:"user_id"`
		Username string `json:"username"`
	}
	s.NewClient().MustDo(t, http.MethodPost, "/auth/register", map[string]string{"username": name, "password": pw}, http.StatusCreated, &reg)
	if reg.UserID == "" || reg.Username != name {
		t.Fatalf("register answer %+v", reg)
	}
	return s.Login(t, name, pw), reg.UserID
}

// DevSecrets are the dev-profile secrets the stack's secret store serves.
func DevSecrets() (map[string]string, error) {
	data, err := os.ReadFile(filepath.Join(RepoRoot(), "dapr", "secrets.dev.json"))
	if err != nil {
		return nil, err
	}
	var m map[string]string
	return m, json.Unmarshal(data, &m)
}

// Admin logs in as the dev-profile admin.
func (s *Stack) Admin(t testing.TB) *Client {
	t.Helper()
	secrets, err := DevSecrets()
	if err != nil {
		t.Fatal(err)
	}
	return s.Login(t, "admin", secrets["admin-password-admin"])
}
