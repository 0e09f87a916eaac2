// Package dapractor speaks the sidecar's actor HTTP API for GroupActor:
//
//	POST   /v1.0/actors/GroupActor/{id}/method/{method}     call a method (group.Actors)
//	GET    /v1.0/actors/GroupActor/{id}/state/group         read legacy actor state
//	POST   /v1.0/actors/GroupActor/{id}/reminders/deadline  register the durable reminder
//	DELETE /v1.0/actors/GroupActor/{id}/reminders/deadline  delete it
//
// A group's state is not actor state any more: the actor state API saves without an ETag, so
// a stale turn could overwrite a newer one. The state lives in the group app's own key with
// ETag writes (apps/group/internal/daprstore.Groups). Groups saved by earlier versions under
// the actor state key "group" (with Redis the hash "group||GroupActor||<id>||group", value in
// field "data") are still read here, without activating the actor, until their next save
// moves them.
package dapractor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/problem"
	"github.com/groupbuy/groupbuy/pkg/sidecar"
)

// StateKey is the actor state key holding a group.
const StateKey = "group"

// Client is the actor API of one sidecar.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client of the configured sidecar.
func New(c sidecar.Config) *Client {
	return &Client{base: c.HTTPBase() + "/v1.0/actors/" + actorhost.ActorType + "/", token: c.APIToken,
		hc: sidecar.DefaultHTTPClient(otelhttp.NewTransport(http.DefaultTransport))}
}

var (
	_ group.Actors        = (*Client)(nil)
	_ actorhost.Reminders = (*Client)(nil)
)

func (c *Client) do(ctx context.Context, method, path string, in any) (*http.Response, []byte, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, nil, fmt.Errorf("encode %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("dapr-api-token", c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, fmt.Errorf("actor api %s: %w", path, ctx.Err())
		}
		return nil, nil, &problem.Error{Code: problem.CodeUnavailable, Detail: "the dapr sidecar is unreachable"}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, nil, fmt.Errorf("read actor api %s: %w", path, err)
	}
	return resp, data, nil
}

// failure turns a non-2xx answer into an error: a problem document keeps its code, Dapr's
// own errors ({"errorCode","message"}) become "unavailable".
func failure(what string, resp *http.Response, data []byte) error {
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt == problem.ContentType {
		var doc problem.Document
		if json.Unmarshal(data, &doc) == nil && doc.Code != "" {
			return problem.FromDocument(doc, 0)
		}
	}
	var daprErr struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	_ = json.Unmarshal(data, &daprErr)
	return &problem.Error{Code: problem.CodeUnavailable,
		Detail: fmt.Sprintf("%s: %d %s %s", what, resp.StatusCode, daprErr.ErrorCode, daprErr.Message)}
}

func (c *Client) invoke(ctx context.Context, id, method string, in any) (actorhost.Reply, error) {
	path := url.PathEscape(id) + "/method/" + method
	resp, data, err := c.do(ctx, http.MethodPost, path, in)
	if err != nil {
		return actorhost.Reply{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return actorhost.Reply{}, failure("GroupActor."+method, resp, data)
	}
	var out actorhost.Reply
	if err := json.Unmarshal(data, &out); err != nil {
		return actorhost.Reply{}, fmt.Errorf("decode GroupActor.%s answer: %w", method, err)
	}
	if out.Problem != nil {
		return actorhost.Reply{}, problem.FromDocument(*out.Problem, 0)
	}
	return out, nil
}

func (c *Client) group(ctx context.Context, id, method string, in any) (group.Group, error) {
	out, err := c.invoke(ctx, id, method, in)
	if err != nil || out.Group == nil {
		return group.Group{}, err
	}
	return *out.Group, nil
}

func (c *Client) seat(ctx context.Context, id, method string, in any) (group.Seated, error) {
	out, err := c.invoke(ctx, id, method, in)
	if err != nil {
		return group.Seated{}, err
	}
	if out.Group == nil || len(out.Order) == 0 {
		return group.Seated{}, fmt.Errorf("GroupActor.%s answered without the group or the order", method)
	}
	return group.Seated{Group: *out.Group, Order: out.Order}, nil
}

// OpenSeat implements group.Actors.
func (c *Client) OpenSeat(ctx context.Context, id string, a group.OpenArgs) (group.Seated, error) {
	return c.seat(ctx, id, actorhost.MethodOpenSeat, a)
}

// JoinSeat implements group.Actors.
func (c *Client) JoinSeat(ctx context.Context, id string, a group.SeatArgs) (group.Seated, error) {
	return c.seat(ctx, id, actorhost.MethodJoinSeat, a)
}

// MemberPaid implements group.Actors.
func (c *Client) MemberPaid(ctx context.Context, id string, a group.PaidArgs) (group.Group, error) {
	return c.group(ctx, id, actorhost.MethodMemberPaid, a)
}

// MemberLeft implements group.Actors.
func (c *Client) MemberLeft(ctx context.Context, id string, a group.LeftArgs) (group.Group, error) {
	return c.group(ctx, id, actorhost.MethodMemberLeft, a)
}

// Get implements group.Actors.
func (c *Client) Get(ctx context.Context, id string) (group.Group, error) {
	return c.group(ctx, id, actorhost.MethodGet, nil)
}

// Load reads a group's legacy actor state (daprstore.LegacyStates). The sidecar answers 204
// for a key that was never written.
func (c *Client) Load(ctx context.Context, id string) (group.Group, bool, error) {
	resp, data, err := c.do(ctx, http.MethodGet, url.PathEscape(id)+"/state/"+StateKey, nil)
	if err != nil {
		return group.Group{}, false, err
	}
	if resp.StatusCode/100 != 2 {
		return group.Group{}, false, failure("get actor state", resp, data)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return group.Group{}, false, nil
	}
	var g group.Group
	if err := json.Unmarshal(data, &g); err != nil {
		return group.Group{}, false, fmt.Errorf("decode state of group %s: %w", id, err)
	}
	return g, true, nil
}

// Register implements actorhost.Reminders. The due time is absolute (RFC 3339, which the
// scheduler accepts as a point in time), so registering again after a crash keeps the
// deadline where it was. A reminder that already exists is overwritten by the scheduler; some
// 1.16.0 paths answer AlreadyExists instead, which means the same thing here.
func (c *Client) Register(ctx context.Context, id, name string, due time.Time, period time.Duration) error {
	in := map[string]string{"dueTime": due.UTC().Format(time.RFC3339Nano)}
	if period > 0 {
		in["period"] = period.String()
	}
	resp, data, err := c.do(ctx, http.MethodPost, url.PathEscape(id)+"/reminders/"+url.PathEscape(name), in)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		if strings.Contains(strings.ToLower(string(data)), "already exists") || strings.Contains(string(data), "AlreadyExists") {
			return nil
		}
		return failure("register reminder", resp, data)
	}
	return nil
}

// Delete implements actorhost.Reminders.
func (c *Client) Delete(ctx context.Context, id, name string) error {
	resp, data, err := c.do(ctx, http.MethodDelete, url.PathEscape(id)+"/reminders/"+url.PathEscape(name), nil)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 && resp.StatusCode != http.StatusNotFound {
		return failure("delete reminder", resp, data)
	}
	return nil
}
