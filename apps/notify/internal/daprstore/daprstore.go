// Package daprstore keeps notify's documents in the Dapr state store: inboxes, one key per user
// ("inbox:<user>"), and dead letters, one key per dead-letter topic ("deadletters:<topic>").
// Each change is a read-modify-write with the ETag read (daprstate.Mutate). One key per user
// (per topic) keeps the dedupe check and the insert in one atomic write; concurrent deliveries
// (several topics, several replicas) conflict on the ETag and re-apply, never lose an entry.
package daprstore

import (
	"context"
	"errors"

	"github.com/groupbuy/groupbuy/apps/notify/internal/notification"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// attempts bounds the CAS loop of one Add. Running out is reported as an error, so the
// message is retried by the sidecar rather than lost.
const attempts = 8

// Store implements notification.Store.
type Store struct{ state *daprstate.Store }

// New returns a store over state.
func New(state *daprstate.Store) *Store { return &Store{state: state} }

// Key is the state key of a user's inbox.
func Key(userID string) string { return "inbox:" + userID }

// Add implements notification.Store.
func (s *Store) Add(ctx context.Context, userID string, n notification.Notification) (bool, error) {
	var added bool
	_, err := daprstate.Mutate(ctx, s.state, Key(userID), attempts, func(in *notification.Inbox, _ bool) error {
		added = in.Add(n)
		if !added {
			return daprstate.ErrNoChange
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return added, nil
}

// Inbox implements notification.Store.
func (s *Store) Inbox(ctx context.Context, userID string) ([]notification.Notification, error) {
	var in notification.Inbox
	_, err := s.state.Get(ctx, Key(userID), &in)
	if errors.Is(err, daprstate.ErrNotFound) {
		return nil, nil
	}
	return in.Items, err
}
