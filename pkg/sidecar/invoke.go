package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Invoker calls other apps through Dapr service invocation over the sidecar's HTTP API
// (/v1.0/invoke/<app>/method/<path>). The HTTP form keeps the target's status code and
// problem document intact, and otelhttp injects W3C traceparent so the trace continues.
//
// There is no streaming form: daprd 1.16 buffers a streamed (text/event-stream) invocation
// response until it ends, so live streams are served by the gateway from pub/sub (pkg/live).
type Invoker struct {
	base    string
	token   string
	timeout func(app string) time.Duration
	hc      *http.Client
}

// NewInvoker returns an invoker for the configured sidecar; each call is bounded by
// c.InvokeTimeoutFor(app) (a zero bound leaves only the caller's context and the backstop).
func NewInvoker(c Config) *Invoker {
	return &Invoker{
		base:    c.HTTPBase(),
		token:   c.APIToken,
		timeout: c.InvokeTimeoutFor,
		hc:      DefaultHTTPClient(otelhttp.NewTransport(http.DefaultTransport)),
	}
}

// Call invokes method on app with an optional JSON body and decodes a 2xx JSON answer into
// out (when non-nil). A problem document from the target becomes a *problem.Error with the
// same code; a failure of Dapr itself (target unreachable, circuit open) becomes
// CodeUnavailable.
func (i *Invoker) Call(ctx context.Context, app, method, path string, hdr http.Header, in, out any) error {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request to %s: %w", app, err)
		}
		body = b
	}
	resp, err := i.Raw(ctx, app, method, path, hdr, body)
	if err != nil {
		return err
	}
	if out == nil || len(resp.Body) == 0 {
		return nil
	}
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("decode response of %s %s: %w", app, path, err)
	}
	return nil
}

// Response is a successful (2xx) answer of an invoked app.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

func (i *Invoker) request(ctx context.Context, app, method, path string, hdr http.Header, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := i.base + "/v1.0/invoke/" + url.PathEscape(app) + "/method/" + strings.TrimPrefix(path, "/")
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request to %s: %w", app, err)
	}
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if i.token != "" {
		req.Header.Set("dapr-api-token", i.token)
	}
	return req, nil
}

// ctx is the caller's context: when it ended, its error is the answer; when only the
// invocation's own bound (InvokeTimeouts) ran out, the target is unavailable, as daprd
// reported a timed-out attempt.
func (i *Invoker) transportError(ctx context.Context, app, path string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("invoke %s %s: %w", app, path, ctx.Err())
	}
	// Transient, with an outcome the caller cannot know: it is told to retry after a moment
	// (Retry-After), which the platform's write APIs make safe (the same Idempotency-Key gets
	// the first attempt's answer).
	if errors.Is(err, context.DeadlineExceeded) {
		return &problem.Error{Code: problem.CodeUnavailable, Detail: unavailableDetail, RetryAfter: transientRetryAfter,
			Private: fmt.Sprintf("%s did not answer within %s", app, i.timeout(app))}
	}
	return &problem.Error{Code: problem.CodeUnavailable, Detail: unavailableDetail, RetryAfter: transientRetryAfter,
		Private: fmt.Sprintf("%s is unreachable: %v", app, err)}
}

// unavailableDetail is the public detail of a failed invocation (timeout, target unreachable,
// Dapr's own error); which app, where and why is in the error's Private part, for the logs.
const unavailableDetail = "a service is temporarily unavailable; retry shortly"

// transientRetryAfter is suggested to a caller whose invocation timed out or found its target
// unreachable.
const transientRetryAfter = time.Second

// Raw invokes method on app with a raw JSON body (nil for none) and returns a 2xx answer as
// is; non-2xx answers become errors as described on Call.
func (i *Invoker) Raw(ctx context.Context, app, method, path string, hdr http.Header, body []byte) (*Response, error) {
	callCtx := ctx
	if d := i.timeout(app); d > 0 {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	req, err := i.request(callCtx, app, method, path, hdr, body)
	if err != nil {
		return nil, err
	}
	resp, err := i.hc.Do(req)
	if err != nil {
		return nil, i.transportError(ctx, app, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("read response of %s: %w", app, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, responseError(app, resp, data)
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

func responseError(app string, resp *http.Response, data []byte) error {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt == problem.ContentType {
		var doc problem.Document
		if err := json.Unmarshal(data, &doc); err == nil && doc.Code != "" {
			var retry time.Duration
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil {
				retry = time.Duration(s) * time.Second
			}
			return problem.FromDocument(doc, retry)
		}
	}
	// Not from our app: Dapr's own error (ERR_DIRECT_INVOKE, circuit breaker open, timeout).
	var daprErr struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	_ = json.Unmarshal(data, &daprErr)
	detail := fmt.Sprintf("%s answered %d", app, resp.StatusCode)
	if daprErr.ErrorCode != "" {
		detail = fmt.Sprintf("%s: %s %s", app, daprErr.ErrorCode, daprErr.Message)
	}
	if resp.StatusCode >= 500 || daprErr.ErrorCode != "" {
		return &problem.Error{Code: problem.CodeUnavailable, Detail: unavailableDetail, Private: detail}
	}
	return errors.New(detail)
}
