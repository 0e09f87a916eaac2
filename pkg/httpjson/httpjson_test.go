package httpjson_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/httpjson"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

type order struct {
	Quantity int    `json:"quantity"`
	Note     string `json:"note"`
}

func TestDecode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		body        string
		want        order
		wantCode    problem.Code // empty: no error
		wantFields  []string     // names of the invalid fields
	}{
		{name: "valid", contentType: "application/json", body: `{"quantity":2,"note":"hi"}`, want: order{Quantity: 2, Note: "hi"}},
		{name: "no content type", body: `{"quantity":2}`, want: order{Quantity: 2}},
		{name: "json with charset", contentType: "application/json; charset=utf-8", body: `{"quantity":1}`, want: order{Quantity: 1}},
		{name: "json suffix media type", contentType: "application/merge-patch+json", body: `{"quantity":1}`, want: order{Quantity: 1}},
		{name: "trailing whitespace", contentType: "application/json", body: "{\"quantity\":1}\n\t ", want: order{Quantity: 1}},
		{name: "empty body decodes as empty object", contentType: "application/json", body: ""},
		{
			name: "unknown field", contentType: "application/json", body: `{"quantity":1,"price_cents":1}`,
			wantCode: problem.CodeValidation, wantFields: []string{"price_cents"},
		},
		{
			name: "wrong type", contentType: "application/json", body: `{"quantity":"two"}`,
			wantCode: problem.CodeValidation, wantFields: []string{"quantity"},
		},
		{name: "syntax error", contentType: "application/json", body: `{"quantity":}`, wantCode: problem.CodeValidation},
		{name: "truncated", contentType: "application/json", body: `{"quantity":1`, wantCode: problem.CodeValidation},
		{name: "two objects", contentType: "application/json", body: `{"quantity":1}{"quantity":2}`, wantCode: problem.CodeValidation},
		{name: "trailing garbage", contentType: "application/json", body: `{"quantity":1} x`, wantCode: problem.CodeValidation},
		{name: "not json content type", contentType: "text/plain", body: `{"quantity":1}`, wantCode: problem.CodeUnsupportedMediaType},
		{name: "malformed content type", contentType: "application/", body: `{"quantity":1}`, wantCode: problem.CodeUnsupportedMediaType},
		{
			name: "body over the limit", contentType: "application/json",
			body:     `{"note":"` + strings.Repeat("a", httpjson.MaxBody) + `"}`,
			wantCode: problem.CodePayloadTooLarge,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			var got order
			err := httpjson.Decode(httptest.NewRecorder(), req, &got)

			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("Decode() error = %v, want nil", err)
				}
				if diff := cmp.Diff(got, tt.want); diff != "" {
					t.Errorf("decoded value mismatch (-got +want):\n%s", diff)
				}
				return
			}
			var perr *problem.Error
			if !errors.As(err, &perr) {
				t.Fatalf("Decode() error = %v, want a *problem.Error", err)
			}
			if perr.Code != tt.wantCode {
				t.Errorf("code = %q, want %q (error %v)", perr.Code, tt.wantCode, err)
			}
			if tt.wantFields != nil {
				var got []string
				for _, f := range perr.Fields {
					got = append(got, f.Field)
				}
				if diff := cmp.Diff(got, tt.wantFields); diff != "" {
					t.Errorf("fields mismatch (-got +want):\n%s", diff)
				}
			}
		})
	}
}

func TestWrite(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()

	httpjson.Write(rec, http.StatusCreated, order{Quantity: 3, Note: "x"})

	if got, want := rec.Code, http.StatusCreated; got != want {
		t.Errorf("status = %d, want %d", got, want)
	}
	if got, want := rec.Header().Get("Content-Type"), "application/json"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decode body %q: %v", rec.Body.String(), err)
	}
	want := map[string]any{"quantity": float64(3), "note": "x"}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("body mismatch (-got +want):\n%s", diff)
	}
}
