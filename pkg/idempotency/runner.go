package idempotency

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Errors a Runner answers with.
var (
	ErrReused = problem.New(problem.CodeIdempotencyReused, "the Idempotency-Key was used with a different request")
	ErrInUse  = problem.New(problem.CodeIdempotencyInUse, "a request with this Idempotency-Key is still in progress")
)

// Reply is a finished answer, as stored for replays.
type Reply struct {
	Status int
	Body   []byte
}

// Request names the key a request runs under.
type Request struct {
	UserID, Key string
	Hash        string // fingerprint of the request's body and target
}

// Config tunes a Runner.
type Config struct {
	// Lease is how long an attempt holds its key before a retry may take it over. An
	// attempt's work is cut at half of it, so a live attempt never loses its key to a retry
	// (clocks of the replicas may disagree by up to that half).
	Lease time.Duration
	// Wait bounds how long a retry waits for the answer of the attempt holding its key; keep
	// it below the caller's timeout (the sidecar's resiliency timeout for the app).
	Wait time.Duration
	// RetryAfter is suggested to a retry still refused after Wait (default 1s). Lease
	// defaults to 30s; a zero Wait refuses a retry at once.
	RetryAfter time.Duration
}

// Runner runs requests once per key over a record store. It knows which attempts run in this
// process, so a retry that lands here waits for its first attempt without polling, and takes
// over at once from one that ended without letting go of its key (its claim's answer, or the
// abandon after a failure, was lost).
type Runner[D any, P Doc[D]] struct {
	keys Keys[D]
	cfg  Config
	now  func() time.Time
	log  *slog.Logger

	inst string // prefix of this process's owner tokens
	seq  atomic.Uint64
	mu   sync.Mutex
	live map[string]chan struct{} // owner token → closed when its attempt ends
}

// NewRunner returns a runner over keys. P is inferred: NewRunner[record](keys, ...).
func NewRunner[D any, P Doc[D]](keys Keys[D], cfg Config, now func() time.Time, log *slog.Logger) *Runner[D, P] {
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = time.Second
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second // a zero lease would cut every attempt's work at once
	}
	var b [6]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return &Runner[D, P]{keys: keys, cfg: cfg, now: now, log: log, inst: hex.EncodeToString(b[:]),
		live: map[string]chan struct{}{}}
}

// Attempt is the running request's hold on its key.
type Attempt[D any] struct {
	// Record is the record as claimed: the references to resume with.
	Record D

	keys       Keys[D]
	req        Request
	owner      string
	lease      time.Duration
	now        func() time.Time
	mu         sync.Mutex
	leaseUntil time.Time
}

// Confirm checks that the attempt still holds its key, and that it keeps it for at least
// half a lease more. Call it before a step that would harm another attempt's placement if
// this one had lost the key (undoing what the references name, creating what it answers
// with): it returns ErrNotOwner then. While more than half the lease is left nobody can have
// taken the key over, so it costs no state round trip; otherwise the lease is extended inside
// the record's CAS.
func (a *Attempt[D]) Confirm(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.now().Add(a.lease / 2).Before(a.leaseUntil) {
		return nil
	}
	until, err := a.keys.Confirm(ctx, a.req.UserID, a.req.Key, a.owner, a.lease)
	if err != nil {
		return err
	}
	a.leaseUntil = until
	return nil
}

// maxClaims bounds how often one request claims its key again after losing it to another
// attempt that later abandoned it.
const maxClaims = 3

// Run runs do once per (user, key) and returns the reply stored for the key:
//   - a new key: do runs and its reply is stored;
//   - a finished key: the stored reply, do does not run;
//   - the same key with another hash: ErrReused;
//   - a key held by a running attempt: Run waits up to Config.Wait for that attempt's reply,
//     or for it to end (then it resumes the work); ErrInUse if neither happens in time.
//
// do gets the attempt (its references in Record) and a context that outlives the caller's:
// the work is not cut halfway when the caller gives up, so a retry gets its answer. do
// returns the reply to store, or an error that is not stored: a transient failure (the lease
// is ended so a retry resumes at once) or ErrNotOwner from Attempt.Confirm (the key was taken
// over; the new owner's reply is the answer).
func (r *Runner[D, P]) Run(ctx context.Context, req Request, alloc func(*D), do func(context.Context, *Attempt[D]) (Reply, error)) (Reply, error) {
	owner := r.start()
	defer r.end(owner)
	// Waiting counts from the request's arrival: the caller's deadline does too.
	waitCtx, cancel := context.WithTimeout(ctx, r.cfg.Wait)
	defer cancel()
	dead := ""
	for claims := 0; ; {
		d, claimed, err := r.keys.Begin(ctx, Claim{UserID: req.UserID, Key: req.Key, Hash: req.Hash, Owner: owner,
			Lease: r.cfg.Lease, Dead: dead}, alloc)
		if err != nil {
			// The claim may have landed with its answer lost: let go of it, so a retry need
			// not wait out the lease. Nothing is written when it did not land.
			r.abandon(ctx, req, owner)
			return Reply{}, err
		}
		rec := P(&d).record()
		switch {
		case rec.Hash != req.Hash:
			return Reply{}, ErrReused
		case rec.Done:
			return Reply{Status: rec.Status, Body: rec.Body}, nil
		case claimed && claims == maxClaims:
			r.abandon(ctx, req, owner)
			return Reply{}, r.inUse()
		case claimed:
			claims++
			reply, err := r.attempt(ctx, req, owner, d, do)
			if !errors.Is(err, ErrNotOwner) {
				return reply, err
			}
			// Another attempt took the key over while this one stalled: its reply is the
			// answer, so wait for it like any retry.
			r.log.WarnContext(ctx, "idempotency_claim_lost", slog.String("user_id", req.UserID))
			dead = ""
			continue
		}
		if dead, err = r.await(waitCtx, req, *rec); err != nil {
			return Reply{}, err
		}
	}
}

func (r *Runner[D, P]) attempt(ctx context.Context, req Request, owner string, d D, do func(context.Context, *Attempt[D]) (Reply, error)) (Reply, error) {
	a := &Attempt[D]{Record: d, keys: r.keys, req: req, owner: owner, lease: r.cfg.Lease, now: r.now,
		leaseUntil: P(&d).record().LeaseUntil}
	// Cut at half the lease: no retry takes the key over from a live attempt.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.cfg.Lease/2)
	defer cancel()
	reply, err := do(wctx, a)
	switch {
	case errors.Is(err, ErrNotOwner):
		return Reply{}, err
	case err != nil:
		r.abandon(ctx, req, owner)
		return Reply{}, err
	}
	if err := r.keys.Finish(context.WithoutCancel(ctx), req.UserID, req.Key, owner, reply.Status, reply.Body); err != nil {
		return Reply{}, err
	}
	return reply, nil
}

func (r *Runner[D, P]) abandon(ctx context.Context, req Request, owner string) {
	if err := r.keys.Abandon(context.WithoutCancel(ctx), req.UserID, req.Key, owner); err != nil {
		r.log.WarnContext(ctx, "idempotency_abandon_failed", slog.String("error", err.Error()))
	}
}

// await waits until the attempt holding the key (as rec names it) answers or ends. It
// returns that attempt's token when it is known to have ended without letting go of the key,
// and ErrInUse when ctx ends first.
func (r *Runner[D, P]) await(ctx context.Context, req Request, rec Record) (dead string, err error) {
	if done, local := r.liveness(rec.Owner); local {
		if done == nil {
			return rec.Owner, nil
		}
		select {
		case <-done:
			return "", nil
		case <-ctx.Done():
			return "", r.inUse()
		}
	}
	// Held by another replica: poll the record, backing off.
	for attempt := 0; ; attempt++ {
		d := min(25*time.Millisecond<<attempt, 250*time.Millisecond)
		t := time.NewTimer(d/2 + rand.N(d/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return "", r.inUse()
		case <-t.C:
		}
		cur, found, err := r.keys.Get(ctx, req.UserID, req.Key)
		if err != nil {
			if ctx.Err() != nil {
				return "", r.inUse()
			}
			return "", err
		}
		c := P(&cur).record()
		if !found || c.Done || c.Owner != rec.Owner || !r.now().Before(c.LeaseUntil) {
			return "", nil
		}
	}
}

func (r *Runner[D, P]) inUse() error {
	return &problem.Error{Code: ErrInUse.Code, Detail: ErrInUse.Detail, RetryAfter: r.cfg.RetryAfter}
}

// start registers a new attempt of this process and returns its owner token.
func (r *Runner[D, P]) start() string {
	owner := r.inst + "-" + strconv.FormatUint(r.seq.Add(1), 36)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.live[owner] = make(chan struct{})
	return owner
}

func (r *Runner[D, P]) end(owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(r.live[owner])
	delete(r.live, owner)
}

// liveness tells whether owner is an attempt of this process (local) and, if it is still
// running, returns a channel closed when it ends (nil when it has ended).
func (r *Runner[D, P]) liveness(owner string) (done <-chan struct{}, local bool) {
	if !strings.HasPrefix(owner, r.inst+"-") {
		return nil, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.live[owner]; ok {
		return ch, true
	}
	return nil, true
}
