// Package httpjson decodes request bodies strictly and encodes JSON responses. Unknown fields,
// trailing data and oversized bodies are validation errors of the public API.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// MaxBody bounds every request body.
const MaxBody = 1 << 20

// Decode reads exactly one JSON object from the request into v, rejecting unknown fields.
// An empty body decodes as {} so endpoints whose body is optional accept it.
func Decode(w http.ResponseWriter, r *http.Request, v any) error {
	if err := CheckContentType(r, false); err != nil {
		return err
	}
	body := http.MaxBytesReader(w, r.Body, MaxBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return dec2empty(v)
		}
		return decodeError(err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return problem.New(problem.CodeValidation, "the body must hold a single JSON object")
	}
	return nil
}

// CheckContentType refuses (415 unsupported-media-type) a request whose Content-Type is not
// JSON (application/json or a +json type); a missing one is refused only when required.
func CheckContentType(r *http.Request, required bool) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		if required {
			return problem.New(problem.CodeUnsupportedMediaType, "a body needs Content-Type: application/json")
		}
		return nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		return problem.Errorf(problem.CodeUnsupportedMediaType, "content type %q is not JSON", ct)
	}
	return nil
}

func dec2empty(v any) error {
	if err := json.Unmarshal([]byte("{}"), v); err != nil {
		return problem.New(problem.CodeValidation, "a JSON body is required")
	}
	return nil
}

func decodeError(err error) error {
	var maxErr *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &maxErr):
		return problem.Errorf(problem.CodePayloadTooLarge, "the body exceeds %d bytes", maxErr.Limit)
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return problem.Invalid(problem.FieldError{Field: field, Reason: fmt.Sprintf("must be a %s", typeErr.Type)})
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return problem.New(problem.CodeValidation, "the body is not valid JSON")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return problem.Invalid(problem.FieldError{Field: field, Reason: "unknown field"})
	default:
		return problem.Errorf(problem.CodeValidation, "the body could not be decoded: %v", err)
	}
}

// Write encodes v as the JSON response with the given status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
