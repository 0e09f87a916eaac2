// Package daprstore keeps the group app's own documents in the Dapr state store (plain state
// API, keys prefixed with the app id by the sidecar):
//
//	group:<group>              a group's state, written only in GroupActor turns, with the
//	                           ETag the turn read (Groups)
//	idem:<user>:<sha256(key)>  Idempotency-Key records of open and join, expiring after 24 h
//	                           (pkg/idempotency)
//	dealgroups:<deal>          the groups of a deal, for GET /deals/{id}/groups
package daprstore

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
)

const casAttempts = 50

// idemDoc is the stored form of group.IdemRecord, field for field.
type idemDoc struct {
	idempotency.Record
	GroupID string `json:"group_id"`
	OrderID string `json:"order_id"`
}

// Idempotency implements group.Idempotency over the shared Idempotency-Key store.
type Idempotency struct {
	s *idempotency.Store[idemDoc, *idemDoc]
}

// NewIdempotency returns the key store; records expire after ttl.
func NewIdempotency(s *daprstate.Store, ttl time.Duration) *Idempotency {
	return &Idempotency{s: idempotency.New[idemDoc](s, ttl, time.Now)}
}

// Begin implements group.Idempotency: it creates the record, or takes it over when the hash
// matches, it is not done and the previous owner's lease has passed. The group and order ids
// are allocated only when the key is new, so a retry resumes the same group and order.
func (r *Idempotency) Begin(ctx context.Context, userID, key, hash string, lease time.Duration, newIDs func() (string, string)) (group.IdemRecord, bool, error) {
	d, claimed, err := r.s.Begin(ctx, userID, key, hash, lease, func(d *idemDoc) { d.GroupID, d.OrderID = newIDs() })
	if err != nil {
		return group.IdemRecord{}, false, err
	}
	return d.domain(), claimed, nil
}

func (d idemDoc) domain() group.IdemRecord {
	return group.IdemRecord{Hash: d.Hash, GroupID: d.GroupID, OrderID: d.OrderID, Done: d.Done, Status: d.Status, Body: d.Body,
		LeaseUntil: d.LeaseUntil, CreatedAt: d.CreatedAt}
}

// Finish implements group.Idempotency.
func (r *Idempotency) Finish(ctx context.Context, userID, key string, status int, body []byte) error {
	return r.s.Finish(ctx, userID, key, status, body)
}

// Abandon implements group.Idempotency.
func (r *Idempotency) Abandon(ctx context.Context, userID, key string) error {
	return r.s.Abandon(ctx, userID, key)
}

// Index implements group.Index: one document per deal, changed by ETag CAS. It is written
// when a group opens and when decided groups are pruned, not on every join or payment:
// listings read each group's status from its state.
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
