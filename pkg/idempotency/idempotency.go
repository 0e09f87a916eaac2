// Package idempotency makes a request take effect once per (user, Idempotency-Key): it keeps
// one record per key in a Dapr state store, runs each request against it (Runner) and writes
// the reply stored there, replayed or not.
//
// The first request with a key claims the record: it stores the request's hash, the references
// the request allocates (the order or group ids an app embeds next to Record), a lease and the
// owner token of the attempt, random per attempt. A retry with the same hash waits for the
// attempt holding the key and replays its answer; it takes the record over only once that
// attempt is gone: its lease passed (the owner died), it ended the lease early (Abandon after
// a transient failure), or it ended in this process without letting go. The taker resumes
// with the same references, so every step it repeats must be idempotent. Once finished, the
// record holds the reply to replay and is never claimed or written again.
//
// Every write checks the owner token inside the record's ETag CAS: a stale attempt (its lease
// passed while it stalled and a retry took over) can neither finish, abandon nor extend the
// key, and Attempt.Confirm tells it so before it undoes anything. A write that landed but whose
// answer was lost is recognised by the token on a re-read, so it never locks its own key.
//
// Records live at idem:<user>:<hex(sha256(key)[:16])> and expire ttl after their last write:
// every write passes the TTL again, since Dapr keeps a key written without it forever.
package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Header is the request header that carries the key.
const Header = "Idempotency-Key"

const casAttempts = 50

// Sentinel errors.
var (
	// ErrVanished is returned by Finish when the record is gone (it expired mid-request).
	ErrVanished = errors.New("idempotency: record vanished")
	// ErrNotOwner is returned when the attempt no longer holds its key: the record is finished,
	// or another attempt took it over after this one's lease passed.
	ErrNotOwner = errors.New("idempotency: the key is held by another attempt")
)

// CheckKey validates an Idempotency-Key header value.
func CheckKey(key string) error {
	if key == "" || len(key) > 200 {
		return problem.Invalid(problem.FieldError{Field: Header, Reason: "header is required (1-200 characters)"})
	}
	return nil
}

// Record is the part of a stored record this package manages. An app embeds it in its record
// type, next to the references a request allocates on first claim; the JSON fields of both
// then make one flat document:
//
//	type IdemRecord struct {
//		idempotency.Record
//		OrderID string `json:"order_id"`
//	}
type Record struct {
	Hash string `json:"hash"`
	// Owner is the token of the attempt that holds the key, or that finished it.
	Owner      string    `json:"owner,omitempty"`
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

// Claim asks for a key on behalf of one attempt.
type Claim struct {
	UserID, Key string
	Hash        string // fingerprint of the request; a key reused with another is refused
	Owner       string // the attempt's token
	Lease       time.Duration
	// Dead is the token of an attempt known to have ended without finishing or abandoning
	// the key (it ran in this process): its lease is not waited out.
	Dead string
}

// Keys is what a Runner needs of a record store; Store implements it for the Dapr state store.
type Keys[D any] interface {
	// Begin claims the key and returns the record as stored; claimed is true when the caller's
	// attempt now holds it: the key was new (then the references alloc filled in are stored;
	// alloc may also run for a claim that finds the key, and its references are dropped), or
	// the hash matches, the record is not done and its holder is gone (its
	// lease passed, or it is c.Dead), or the record already names c.Owner.
	Begin(ctx context.Context, c Claim, alloc func(*D)) (rec D, claimed bool, err error)
	// Finish stores the reply if owner still holds the key (ErrNotOwner otherwise).
	Finish(ctx context.Context, userID, key, owner string, status int, body []byte) error
	// Abandon ends owner's lease early, so a retry takes over at once; it does nothing when
	// owner does not hold the key.
	Abandon(ctx context.Context, userID, key, owner string) error
	// Confirm extends owner's lease to now+lease and returns it, if owner still holds the key
	// (ErrNotOwner otherwise).
	Confirm(ctx context.Context, userID, key, owner string, lease time.Duration) (until time.Time, err error)
	// Get reads the record; found is false when there is none.
	Get(ctx context.Context, userID, key string) (rec D, found bool, err error)
}

// Store keeps records of type D, which embeds Record, in a Dapr state store.
type Store[D any, P Doc[D]] struct {
	s   *daprstate.Store
	ttl time.Duration
	now func() time.Time
}

var _ Keys[Record] = (*Store[Record, *Record])(nil)

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

// Begin implements Keys. alloc may run more than once (a claim that finds the key, contention);
// only one run's references are stored.
func (s *Store[D, P]) Begin(ctx context.Context, c Claim, alloc func(*D)) (D, bool, error) {
	var zero, seen D
	if c.Owner == "" {
		return zero, false, errors.New("idempotency: a claim needs an owner token")
	}
	// A new key is the common case: claim it with a create, no read. A key that exists
	// (a retry, a replay) goes the read-modify-write way below.
	var fresh D
	now := s.now().UTC()
	*P(&fresh).record() = Record{Hash: c.Hash, Owner: c.Owner, LeaseUntil: now.Add(c.Lease), CreatedAt: now}
	alloc(&fresh)
	switch err := s.s.Create(ctx, Key(c.UserID, c.Key), fresh, daprstate.TTL(s.ttl)); {
	case err == nil:
		return fresh, true, nil
	case !errors.Is(err, daprstate.ErrExists):
		return s.landed(ctx, c, err)
	}
	claimed := false
	doc, err := daprstate.Mutate(ctx, s.s, Key(c.UserID, c.Key), casAttempts, func(d *D, found bool) error {
		r := P(d).record()
		now := s.now().UTC()
		claimed = false
		switch {
		case !found:
			*r = Record{Hash: c.Hash, Owner: c.Owner, LeaseUntil: now.Add(c.Lease), CreatedAt: now}
			alloc(d)
		case r.Owner == c.Owner && !r.Done:
			// An earlier write of this call landed although its answer was lost (a create
			// then reads as "exists"): the claim is ours.
			claimed = true
			return daprstate.ErrNoChange
		case r.Hash != c.Hash || r.Done,
			now.Before(r.LeaseUntil) && (c.Dead == "" || r.Owner != c.Dead):
			seen = *d
			return errNotOurs
		default:
			// The previous owner gave up, died or ended: take over.
			r.Owner, r.LeaseUntil = c.Owner, now.Add(c.Lease)
		}
		claimed = true
		return nil
	}, daprstate.TTL(s.ttl))
	switch {
	case errors.Is(err, errNotOurs):
		return seen, false, nil
	case err != nil:
		return s.landed(ctx, c, err)
	}
	return doc, claimed, nil
}

// landed answers a claim whose write failed with err: the write may have landed with its
// answer lost, and the owner token says whose claim the stored record is.
func (s *Store[D, P]) landed(ctx context.Context, c Claim, err error) (D, bool, error) {
	if cur, found, gerr := s.Get(ctx, c.UserID, c.Key); gerr == nil && found {
		if r := P(&cur).record(); r.Owner == c.Owner && !r.Done {
			return cur, true, nil
		}
	}
	var zero D
	return zero, false, err
}

// Finish implements Keys: the reply is stored for every later request with the key to replay.
// A finished record is never written again.
func (s *Store[D, P]) Finish(ctx context.Context, userID, key, owner string, status int, body []byte) error {
	_, err := daprstate.Mutate(ctx, s.s, Key(userID, key), casAttempts, func(d *D, found bool) error {
		if !found {
			return ErrVanished
		}
		r := P(d).record()
		switch {
		case r.Done && r.Owner == owner:
			return daprstate.ErrNoChange // an earlier write of this call landed, its answer lost
		case r.Done || r.Owner != owner:
			return ErrNotOwner
		}
		r.Done, r.Status, r.Body = true, status, body
		return nil
	}, daprstate.TTL(s.ttl))
	if err == nil || errors.Is(err, ErrNotOwner) || errors.Is(err, ErrVanished) {
		return err
	}
	if cur, found, gerr := s.Get(ctx, userID, key); gerr == nil && found {
		if r := P(&cur).record(); r.Done && r.Owner == owner {
			return nil // the write landed, its answer lost
		}
	}
	return err
}

// Abandon implements Keys. A missing or done record, or one held by another attempt, is left
// alone.
func (s *Store[D, P]) Abandon(ctx context.Context, userID, key, owner string) error {
	_, err := daprstate.Mutate(ctx, s.s, Key(userID, key), casAttempts, func(d *D, found bool) error {
		r := P(d).record()
		if !found || r.Done || r.Owner != owner || r.LeaseUntil.IsZero() {
			return daprstate.ErrNoChange
		}
		r.LeaseUntil = time.Time{}
		return nil
	}, daprstate.TTL(s.ttl))
	return err
}

// Confirm implements Keys.
func (s *Store[D, P]) Confirm(ctx context.Context, userID, key, owner string, lease time.Duration) (time.Time, error) {
	var until time.Time
	_, err := daprstate.Mutate(ctx, s.s, Key(userID, key), casAttempts, func(d *D, found bool) error {
		r := P(d).record()
		if !found || r.Done || r.Owner != owner {
			return ErrNotOwner
		}
		until = s.now().UTC().Add(lease)
		r.LeaseUntil = until
		return nil
	}, daprstate.TTL(s.ttl))
	if err == nil || errors.Is(err, ErrNotOwner) {
		return until, err
	}
	if cur, found, gerr := s.Get(ctx, userID, key); gerr == nil && found {
		if r := P(&cur).record(); !r.Done && r.Owner == owner && r.LeaseUntil.Equal(until) {
			return until, nil // the write landed, its answer lost
		}
	}
	return time.Time{}, err
}

// Get implements Keys.
func (s *Store[D, P]) Get(ctx context.Context, userID, key string) (D, bool, error) {
	var d D
	_, err := s.s.Get(ctx, Key(userID, key), &d)
	switch {
	case errors.Is(err, daprstate.ErrNotFound):
		return d, false, nil
	case err != nil:
		return d, false, fmt.Errorf("idempotency record: %w", err)
	}
	return d, true, nil
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
