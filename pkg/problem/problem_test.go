package problem_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

func TestCodeStatusAndTitle(t *testing.T) {
	t.Parallel()
	// The public contract of DESIGN.md §4 plus the codes the platform adds for itself.
	tests := []struct {
		code       problem.Code
		wantStatus int
	}{
		{problem.CodeValidation, http.StatusBadRequest},
		{problem.CodeUnauthorized, http.StatusUnauthorized},
		{problem.CodeForbidden, http.StatusForbidden},
		{problem.CodeNotFound, http.StatusNotFound},
		{problem.CodeRateLimited, http.StatusTooManyRequests},
		{problem.CodeSoldOut, http.StatusConflict},
		{problem.CodeDealNotActive, http.StatusConflict},
		{problem.CodePurchaseLimit, http.StatusConflict},
		{problem.CodeGroupFull, http.StatusConflict},
		{problem.CodeGroupClosed, http.StatusConflict},
		{problem.CodeAlreadyMember, http.StatusConflict},
		{problem.CodeIdempotencyReused, http.StatusUnprocessableEntity},
		{problem.CodeIdempotencyInUse, http.StatusConflict},
		{problem.CodePaymentDeclined, http.StatusPaymentRequired},
		{problem.CodePaymentUnavailable, http.StatusServiceUnavailable},
		{problem.CodeInvalidState, http.StatusConflict},
		{problem.CodeConflict, http.StatusConflict},
		{problem.CodeUnavailable, http.StatusServiceUnavailable},
		{problem.CodeInternal, http.StatusInternalServerError},
		{problem.CodeMethodNotAllowed, http.StatusMethodNotAllowed},
		{problem.CodeUnsupportedMediaType, http.StatusUnsupportedMediaType},
		{problem.CodePayloadTooLarge, http.StatusRequestEntityTooLarge},
		{problem.Code("no-such-code"), http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(string(tt.code), func(t *testing.T) {
			t.Parallel()
			if got := tt.code.Status(); got != tt.wantStatus {
				t.Errorf("Status() = %d, want %d", got, tt.wantStatus)
			}
			if got := tt.code.Title(); got == "" {
				t.Error("Title() is empty")
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	t.Parallel()
	sentinel := problem.New(problem.CodeSoldOut, "the deal is sold out")
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"same pointer", sentinel, sentinel, true},
		{"wrapped sentinel", fmt.Errorf("order 7: %w", sentinel), sentinel, true},
		{"re-created with same code and detail", problem.New(problem.CodeSoldOut, "the deal is sold out"), sentinel, true},
		{"target without detail matches any detail", problem.New(problem.CodeSoldOut, "other words"), &problem.Error{Code: problem.CodeSoldOut}, true},
		{"same code, other detail", problem.New(problem.CodeSoldOut, "other words"), sentinel, false},
		{"other code", problem.New(problem.CodeGroupFull, "the deal is sold out"), sentinel, false},
		{"plain error target", sentinel, errors.New("sold-out"), false},
		{"plain error", errors.New("sold-out"), sentinel, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := errors.Is(tt.err, tt.target); got != tt.want {
				t.Errorf("errors.Is(%v, %v) = %t, want %t", tt.err, tt.target, got, tt.want)
			}
		})
	}
}

func TestErrorMessage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  *problem.Error
		want string
	}{
		{"code only", &problem.Error{Code: problem.CodeConflict}, "conflict"},
		{"with detail", problem.New(problem.CodeConflict, "taken"), "conflict: taken"},
		{"formatted", problem.Errorf(problem.CodeNotFound, "deal %s", "42"), "not-found: deal 42"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCodeOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want problem.Code
	}{
		{"problem error", problem.New(problem.CodeGroupFull, "full"), problem.CodeGroupFull},
		{"wrapped problem error", fmt.Errorf("join: %w", problem.New(problem.CodeGroupFull, "full")), problem.CodeGroupFull},
		{"plain error", errors.New("boom"), problem.CodeInternal},
		{"nil", nil, problem.CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := problem.CodeOf(tt.err); got != tt.want {
				t.Errorf("CodeOf() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name           string
		err            error
		wantStatus     int
		wantRetryAfter string
		wantDoc        problem.Document
	}{
		{
			name:       "problem error",
			err:        fmt.Errorf("buy: %w", problem.New(problem.CodeSoldOut, "no units left")),
			wantStatus: http.StatusConflict,
			wantDoc: problem.Document{
				Type: problem.TypeBase + "sold-out", Title: "Sold out", Status: http.StatusConflict,
				Code: problem.CodeSoldOut, Detail: "no units left", Instance: "/api/v1/deals/1/orders",
			},
		},
		{
			name:       "validation with fields",
			err:        problem.Invalid(problem.FieldError{Field: "quantity", Reason: "must be positive"}),
			wantStatus: http.StatusBadRequest,
			wantDoc: problem.Document{
				Type: problem.TypeBase + "validation", Title: "Invalid request", Status: http.StatusBadRequest,
				Code: problem.CodeValidation, Detail: "the request is invalid", Instance: "/api/v1/deals/1/orders",
				Errors: []problem.FieldError{{Field: "quantity", Reason: "must be positive"}},
			},
		},
		{
			name:           "retry after rounds up to whole seconds",
			err:            &problem.Error{Code: problem.CodeRateLimited, Detail: "slow down", RetryAfter: 1500 * time.Millisecond},
			wantStatus:     http.StatusTooManyRequests,
			wantRetryAfter: "2",
			wantDoc: problem.Document{
				Type: problem.TypeBase + "rate-limited", Title: "Too many requests", Status: http.StatusTooManyRequests,
				Code: problem.CodeRateLimited, Detail: "slow down", Instance: "/api/v1/deals/1/orders",
			},
		},
		{
			name:       "plain error does not leak its message",
			err:        errors.New("redis: connection refused at 10.0.0.7:6379"),
			wantStatus: http.StatusInternalServerError,
			wantDoc: problem.Document{
				Type: problem.TypeBase + "internal", Title: "Internal error", Status: http.StatusInternalServerError,
				Code: problem.CodeInternal, Detail: "an unexpected error occurred", Instance: "/api/v1/deals/1/orders",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/api/v1/deals/1/orders", nil)

			problem.Write(rec, req, tt.err)

			if got := rec.Code; got != tt.wantStatus {
				t.Errorf("status = %d, want %d", got, tt.wantStatus)
			}
			if got := rec.Header().Get("Content-Type"); got != problem.ContentType {
				t.Errorf("Content-Type = %q, want %q", got, problem.ContentType)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetryAfter {
				t.Errorf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			var got problem.Document
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("decode body %q: %v", rec.Body.String(), err)
			}
			if diff := cmp.Diff(got, tt.wantDoc); diff != "" {
				t.Errorf("document mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestFromDocument(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		doc   problem.Document
		retry time.Duration
		want  *problem.Error
	}{
		{
			name:  "known code keeps detail, fields and retry",
			doc:   problem.Document{Code: problem.CodeValidation, Detail: "bad", Errors: []problem.FieldError{{Field: "a", Reason: "b"}}},
			retry: 3 * time.Second,
			want:  &problem.Error{Code: problem.CodeValidation, Detail: "bad", Fields: []problem.FieldError{{Field: "a", Reason: "b"}}, RetryAfter: 3 * time.Second},
		},
		{
			name: "unknown code becomes internal",
			doc:  problem.Document{Code: "made-up", Detail: "x"},
			want: &problem.Error{Code: problem.CodeInternal, Detail: "x"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := problem.FromDocument(tt.doc, tt.retry)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("FromDocument mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// A sentinel survives the trip through a problem document, which is how errors cross apps.
func TestWriteThenFromDocumentMatchesSentinel(t *testing.T) {
	t.Parallel()
	sentinel := problem.New(problem.CodeGroupFull, "the group is full")
	rec := httptest.NewRecorder()
	problem.Write(rec, httptest.NewRequest(http.MethodPost, "/groups/1/join", nil), fmt.Errorf("join: %w", sentinel))

	var doc problem.Document
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatalf("decode body: %v", err)
	}
	got := problem.FromDocument(doc, 0)
	if !errors.Is(got, sentinel) {
		t.Errorf("errors.Is(%v, %v) = false, want true", got, sentinel)
	}
}
