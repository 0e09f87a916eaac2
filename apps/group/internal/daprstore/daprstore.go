// Package daprstore keeps the group app's own documents (not actor state) in the Dapr state
// store:
//
//	idem:<user>:<sha256(key)>  Idempotency-Key records of open and join, expiring after 24 h
//	dealgroups:<deal>          the groups of a deal, for GET /deals/{id}/groups
package daprstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

const casAttempts = 50

// Idempotency implements group.Idempotency.
type Idempotency struct {
	s   *daprstate.Store
	ttl time.Duration
	now func() time.Time
}

// NewIdempotency returns the key store; records expire after ttl.
func NewIdempotency(s *daprstate.Store, ttl time.Duration) *Idempotency {
	return &Idempotency{s: s, ttl: ttl, now: time.Now}
}

func idemKey(userID, key string) string {
	sum := sha256.Sum256([]byte(key))
	return "idem:" + userID + ":" + hex.EncodeToString(sum[:16])
}

var errNotOurs = errors.New("idempotency: not claimable")

// Begin implements group.Idempotency: it creates the record, or takes it over when the hash
// matches, it is not done and the previous owner's lease has passed.
func (r *Idempotency) Begin(ctx context.Context, userID, key, hash string, lease time.Duration, newIDs func() (string, string)) (group.IdemRecord, bool, error) {
	claimed := false
	rec, err := daprstate.Mutate(ctx, r.s, idemKey(userID, key), casAttempts, func(d *group.IdemRecord, found bool) error {
		now := r.now().UTC()
		claimed = false
		switch {
		case !found:
			gid, oid := newIDs()
			*d = group.IdemRecord{Hash: hash, GroupID: gid, OrderID: oid, LeaseUntil: now.Add(lease), CreatedAt: now}
		case d.Hash != hash || d.Done || now.Before(d.LeaseUntil):
			return errNotOurs
		default:
			d.LeaseUntil = now.Add(lease)
		}
		claimed = true
		return nil
	}, daprstate.TTL(r.ttl))
	if errors.Is(err, errNotOurs) {
		var cur group.IdemRecord
		if _, gerr := r.s.Get(ctx, idemKey(userID, key), &cur); gerr != nil {
			return group.IdemRecord{}, false, gerr
		}
		return cur, false, nil
	}
	return rec, claimed, err
}

// Finish implements group.Idempotency.
func (r *Idempotency) Finish(ctx context.Context, userID, key string, status int, body []byte) error {
	_, err := daprstate.Mutate(ctx, r.s, idemKey(userID, key), casAttempts, func(d *group.IdemRecord, found bool) error {
		if !found {
			return fmt.Errorf("idempotency record vanished")
		}
		d.Done, d.Status, d.Body = true, status, body
		return nil
	}, daprstate.TTL(r.ttl))
	return err
}

// Abandon implements group.Idempotency.
func (r *Idempotency) Abandon(ctx context.Context, userID, key string) error {
	_, err := daprstate.Mutate(ctx, r.s, idemKey(userID, key), casAttempts, func(d *group.IdemRecord, found bool) error {
		if !found || d.Done {
			return daprstate.ErrNoChange
		}
		d.LeaseUntil = time.Time{}
		return nil
	}, daprstate.TTL(r.ttl))
	return err
}

// Index implements group.Index: one document per deal, changed by ETag CAS. It is written
// when a group opens and when decided groups are pruned, not on every join or payment:
// listings read each group's status from its actor state.
type Index struct{ s *daprstate.Store }

// NewIndex returns the deal index.
func NewIndex(s *daprstate.Store) *Index { return &Index{s: s} }

type indexDoc struct {
	Groups []group.IndexEntry `json:"groups"`
}

func indexKey(dealID string) string { return "dealgroups:" + dealID }

// Add implements group.Index; adding a group twice is a no-op.
func (x *Index) Add(ctx context.Context, dealID, groupID string, expiresAt time.Time) error {
	_, err := daprstate.Mutate(ctx, x.s, indexKey(dealID), casAttempts, func(d *indexDoc, _ bool) error {
		if slices.ContainsFunc(d.Groups, func(e group.IndexEntry) bool { return e.GroupID == groupID }) {
			return daprstate.ErrNoChange
		}
		d.Groups = append(d.Groups, group.IndexEntry{GroupID: groupID, ExpiresAt: expiresAt})
		return nil
	})
	return err
}

// List implements group.Index.
func (x *Index) List(ctx context.Context, dealID string) ([]group.IndexEntry, error) {
	var d indexDoc
	_, err := x.s.Get(ctx, indexKey(dealID), &d)
	if errors.Is(err, daprstate.ErrNotFound) {
		return nil, nil
	}
	return d.Groups, err
}

// Remove implements group.Index.
func (x *Index) Remove(ctx context.Context, dealID string, groupIDs []string) error {
	_, err := daprstate.Mutate(ctx, x.s, indexKey(dealID), casAttempts, func(d *indexDoc, found bool) error {
		n := len(d.Groups)
		d.Groups = slices.DeleteFunc(d.Groups, func(e group.IndexEntry) bool { return slices.Contains(groupIDs, e.GroupID) })
		if !found || len(d.Groups) == n {
			return daprstate.ErrNoChange
		}
		return nil
	})
	return err
}
