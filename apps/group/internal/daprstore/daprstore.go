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

// NewIdempotency returns the Idempotency-Key store (group.Idempotency); records expire after
// ttl. A group.IdemRecord is stored as one flat document, the group and order ids next to the
// shared fields.
func NewIdempotency(s *daprstate.Store, ttl time.Duration) *idempotency.Store[group.IdemRecord, *group.IdemRecord] {
	return idempotency.New[group.IdemRecord](s, ttl, time.Now)
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
