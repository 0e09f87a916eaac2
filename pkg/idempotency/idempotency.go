// Package idempotency makes a request take effect once per (user, Idempotency-Key): it keeps
// one record per key in a Dapr state store and writes the reply stored there, replayed or not.
//
// The first request with a key claims the record: it stores the request's hash, the references
// the request allocates (the order or group ids an app embeds next to Record) and a lease. A
// retry with the same hash takes the record over once the lease has passed (the owner died)
// or was ended early (Abandon after a transient failure), and resumes with the same
// references, so every step it repeats must be idempotent. Once finished, the record holds
// the reply to replay and is never claimed again.
//
// Records live at idem:<user>:<hex(sha256(key)[:16])> and expire ttl after their last write:
// every write passes the TTL again, since Dapr keeps a key written without it forever.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"time"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Header is the request header that carries the key.
const Header = "Idempotency-Key"

const casAttempts = 50

// ErrVanished is returned by Finish when the record is gone (it expired mid-request).
var ErrVanished = errors.New("idempotency: record vanished")

// Record is the part of a stored record this package manages. An app embeds it in its record
// type, next to the references a request allocates on first claim; the JSON fields of both
// then make one flat document:
//
//	type record struct {
//		idempotency.Record
//		OrderID string `json:"order_id"`
//	}
type Record struct {
	Hash       string    `json:"hash"`
	Done       bool      `json:"done"`
	Status     int       `json:"status,omitempty"`
	Body       []byte    `json:"body,omitempty"`
	LeaseUntil time.Time `json:"lease_until"`
	CreatedAt  time.Time `json:"created_at"`
}

func (r *Record) record() *Record { return r }

// Doc is satisfied by a pointer to a type that embeds Record.
type Doc[D any] interface {
	*D
	record() *Record
}

// Store keeps records of type D, which embeds Record.
type Store[D any, P Doc[D]] struct {
	s   *daprstate.Store
	ttl time.Duration
	now func() time.Time
}

// New returns a store whose records expire ttl after their last write. P is inferred:
// New[record](s, ttl, time.Now).
func New[D any, P Doc[D]](s *daprstate.Store, ttl time.Duration, now func() time.Time) *Store[D, P] {
	return &Store[D, P]{s: s, ttl: ttl, now: now}
}

// Key is the state key of a user's key. The key is hashed, so neither its length nor its
// content reaches the store's key space.
func Key(userID, key string) string {
	sum := sha256.Sum256([]byte(key))
	return "idem:" + userID + ":" + hex.EncodeToString(sum[:16])
}

var errNotOurs = errors.New("idempotency: not claimable")

// Begin claims the key for a request with the given hash, for lease. It returns the record as
// stored; claimed is true when the caller now owns it: the key was new (then, and only then,
// alloc fills in the references), or the hash matches, the record is not done and the previous
// owner's lease has passed. Otherwise the caller compares the hash and replays a done record or
// refuses. alloc may run more than once under contention; only one run's references are stored.
func (s *Store[D, P]) Begin(ctx context.Context, userID, key, hash string, lease time.Duration, alloc func(*D)) (D, bool, error) {
	var zero D
	claimed := false
	doc, err := daprstate.Mutate(ctx, s.s, Key(userID, key), casAttempts, func(d *D, found bool) error {
		r := P(d).record()
		now := s.now().UTC()
		claimed = false
		switch {
		case !found:
			*r = Record{Hash: hash, LeaseUntil: now.Add(lease), CreatedAt: now}
			alloc(d)
		case r.Hash != hash || r.Done || now.Before(r.LeaseUntil):
			return errNotOurs
		default:
			r.LeaseUntil = now.Add(lease) // the previous owner gave up or died: take over
		}
		claimed = true
		return nil
	}, daprstate.TTL(s.ttl))
	if errors.Is(err, errNotOurs) {
		var cur D
		if _, gerr := s.s.Get(ctx, Key(userID, key), &cur); gerr != nil {
			return zero, false, gerr
		}
		return cur, false, nil
	}
	if err != nil {
		return zero, false, err
	}
	return doc, claimed, nil
}

// Finish stores the reply, for every later request with the key to replay.
func (s *Store[D, P]) Finish(ctx context.Context, userID, key string, status int, body []byte) error {
	_, err := daprstate.Mutate(ctx, s.s, Key(userID, key), casAttempts, func(d *D, found bool) error {
		if !found {
			return ErrVanished
		}
		r := P(d).record()
		r.Done, r.Status, r.Body = true, status, body
		return nil
	}, daprstate.TTL(s.ttl))
	return err
}

// Abandon ends the lease early after a transient failure, so a retry takes over at once. A
// missing or done record is left alone.
func (s *Store[D, P]) Abandon(ctx context.Context, userID, key string) error {
	_, err := daprstate.Mutate(ctx, s.s, Key(userID, key), casAttempts, func(d *D, found bool) error {
		r := P(d).record()
		if !found || r.Done {
			return daprstate.ErrNoChange
		}
		r.LeaseUntil = time.Time{}
		return nil
	}, daprstate.TTL(s.ttl))
	return err
}

// WriteReply writes a stored reply, first or replayed: a success as JSON, an error status as
// the problem document it was rendered to.
func WriteReply(w http.ResponseWriter, status int, body []byte) {
	ct := "application/json"
	if status >= 400 {
		ct = problem.ContentType
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
