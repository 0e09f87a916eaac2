package daprstore

import (
	"context"
	"errors"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// DeadLetters implements deadletter.Store: one key per dead-letter topic
// ("deadletters:<topic>", a deadletter.List), each change a read-modify-write with the ETag
// read, so the dedupe check and the insert (or a replay's mark) are one atomic write.
type DeadLetters struct{ state *daprstate.Store }

// NewDeadLetters returns a dead-letter store over state.
func NewDeadLetters(state *daprstate.Store) *DeadLetters { return &DeadLetters{state: state} }

// DeadLetterKey is the state key of a dead-letter topic's list.
func DeadLetterKey(topic string) string { return "deadletters:" + topic }

// Update implements deadletter.Store.
func (s *DeadLetters) Update(ctx context.Context, topic string, fn func(*deadletter.List) error) error {
	_, err := daprstate.Mutate(ctx, s.state, DeadLetterKey(topic), attempts, func(ls *deadletter.List, _ bool) error {
		err := fn(ls)
		if errors.Is(err, deadletter.ErrNoChange) {
			return daprstate.ErrNoChange
		}
		return err
	})
	return err
}

// List implements deadletter.Store.
func (s *DeadLetters) List(ctx context.Context, topic string) ([]deadletter.Letter, error) {
	var ls deadletter.List
	_, err := s.state.Get(ctx, DeadLetterKey(topic), &ls)
	if errors.Is(err, daprstate.ErrNotFound) {
		return nil, nil
	}
	return ls.Items, err
}
