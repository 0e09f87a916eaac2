// Package problem defines the platform's error codes and renders errors as RFC 9457 problem
// documents (application/problem+json) carrying the stable extension member "code".
//
// Domain packages return *Error values (usually sentinels wrapped with context); the one mapper
// in Write turns any error into a problem response, so status codes live in one table here.
package problem

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Code is a stable, machine-readable error code of the public API (DESIGN.md §4).
type Code string

// Error codes of the public API.
const (
	CodeValidation           Code = "validation"
	CodeUnauthorized         Code = "unauthorized"
	CodeForbidden            Code = "forbidden"
	CodeNotFound             Code = "not-found"
	CodeRateLimited          Code = "rate-limited"
	CodeSoldOut              Code = "sold-out"
	CodeDealNotActive        Code = "deal-not-active"
	CodePurchaseLimit        Code = "purchase-limit"
	CodeGroupFull            Code = "group-full"
	CodeGroupClosed          Code = "group-closed"
	CodeAlreadyMember        Code = "already-member"
	CodeIdempotencyReused    Code = "idempotency-key-reused"
	CodeIdempotencyInUse     Code = "idempotency-key-in-use"
	CodePaymentDeclined      Code = "payment-declined"
	CodePaymentUnavailable   Code = "payment-unavailable"
	CodeInvalidState         Code = "invalid-state"
	CodeConflict             Code = "conflict"
	CodeUnavailable          Code = "unavailable"
	CodeInternal             Code = "internal"
	CodeMethodNotAllowed     Code = "method-not-allowed"
	CodeUnsupportedMediaType Code = "unsupported-media-type"
	CodePayloadTooLarge      Code = "payload-too-large"
)

type codeInfo struct {
	status int
	title  string
}

// table maps every code to its HTTP status and title: the only place that does.
var table = map[Code]codeInfo{
	CodeValidation:           {http.StatusBadRequest, "Invalid request"},
	CodeUnauthorized:         {http.StatusUnauthorized, "Unauthorized"},
	CodeForbidden:            {http.StatusForbidden, "Forbidden"},
	CodeNotFound:             {http.StatusNotFound, "Not found"},
	CodeRateLimited:          {http.StatusTooManyRequests, "Too many requests"},
	CodeSoldOut:              {http.StatusConflict, "Sold out"},
	CodeDealNotActive:        {http.StatusConflict, "Deal not active"},
	CodePurchaseLimit:        {http.StatusConflict, "Purchase limit reached"},
	CodeGroupFull:            {http.StatusConflict, "Group full"},
	CodeGroupClosed:          {http.StatusConflict, "Group closed"},
	CodeAlreadyMember:        {http.StatusConflict, "Already a member"},
	CodeIdempotencyReused:    {http.StatusUnprocessableEntity, "Idempotency key reused with a different request"},
	CodeIdempotencyInUse:     {http.StatusConflict, "Idempotency key in use"},
	CodePaymentDeclined:      {http.StatusPaymentRequired, "Payment declined"},
	CodePaymentUnavailable:   {http.StatusServiceUnavailable, "Payment unavailable"},
	CodeInvalidState:         {http.StatusConflict, "Invalid state"},
	CodeConflict:             {http.StatusConflict, "Conflict"},
	CodeUnavailable:          {http.StatusServiceUnavailable, "Service unavailable"},
	CodeInternal:             {http.StatusInternalServerError, "Internal error"},
	CodeMethodNotAllowed:     {http.StatusMethodNotAllowed, "Method not allowed"},
	CodeUnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported media type"},
	CodePayloadTooLarge:      {http.StatusRequestEntityTooLarge, "Payload too large"},
}

// Status returns the HTTP status of a code (500 for an unknown code).
func (c Code) Status() int {
	if info, ok := table[c]; ok {
		return info.status
	}
	return http.StatusInternalServerError
}

// Title returns the human-readable summary of a code.
func (c Code) Title() string {
	if info, ok := table[c]; ok {
		return info.title
	}
	return "Error"
}

// FieldError names one invalid input field.
type FieldError struct {
	Field  string `json:"field"`
	Reason string `json:"reason"`
}

// Error is an error with a public code. Compare with errors.Is against sentinels: two *Error
// values match when their codes match and the target has no detail of its own.
type Error struct {
	Code       Code
	Detail     string
	Fields     []FieldError
	RetryAfter time.Duration
	// Private is what only the logs may see (addresses, Dapr error codes and messages): it is
	// part of Error() but never of a problem document, so it does not travel to callers.
	Private string
}

// New returns an error with the code and a detail message.
func New(code Code, detail string) *Error { return &Error{Code: code, Detail: detail} }

// Errorf returns an error with the code and a formatted detail message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Invalid returns a validation error listing the invalid fields.
func Invalid(fields ...FieldError) *Error {
	return &Error{Code: CodeValidation, Detail: "the request is invalid", Fields: fields}
}

func (e *Error) Error() string {
	s := string(e.Code)
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Private != "" {
		s += " (" + e.Private + ")"
	}
	return s
}

// Is lets errors.Is(err, ErrSomething) match any *Error with the same code, so sentinels can be
// re-created across process boundaries (a problem document decoded from another app).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code && (t.Detail == "" || t.Detail == e.Detail)
}

// CodeOf returns the code of err, CodeInternal when it carries none.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// Document is the RFC 9457 wire format.
type Document struct {
	Type     string       `json:"type"`
	Title    string       `json:"title"`
	Status   int          `json:"status"`
	Code     Code         `json:"code"`
	Detail   string       `json:"detail,omitempty"`
	Instance string       `json:"instance,omitempty"`
	Errors   []FieldError `json:"errors,omitempty"`
}

// TypeBase prefixes the code to form the problem type URI.
const TypeBase = "https://groupbuy.dev/problems/"

// ContentType is the media type of problem documents.
const ContentType = "application/problem+json"

// Doc renders err as a problem document. Errors without a code become a generic 500 whose
// detail does not leak internals.
func Doc(err error, instance string) Document {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInternal, Detail: "an unexpected error occurred"}
	}
	return Document{
		Type:     TypeBase + string(e.Code),
		Title:    e.Code.Title(),
		Status:   e.Code.Status(),
		Code:     e.Code,
		Detail:   e.Detail,
		Instance: instance,
		Errors:   e.Fields,
	}
}

// Write renders err as a problem response.
func Write(w http.ResponseWriter, r *http.Request, err error) {
	doc := Doc(err, r.URL.Path)
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(doc.Status)
	_ = json.NewEncoder(w).Encode(doc)
}

// FromDocument turns a decoded problem document back into an *Error (used for responses
// relayed from another app through Dapr service invocation).
func FromDocument(d Document, retryAfter time.Duration) *Error {
	code := d.Code
	if _, ok := table[code]; !ok {
		code = CodeInternal
	}
	return &Error{Code: code, Detail: d.Detail, Fields: d.Errors, RetryAfter: retryAfter}
}
