package daprstore

import (
	"context"
	"errors"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// DeadLetters implements deadletter.Store: one key per dead-letter topic
// ("deadletters:<topic>", a deadletter.List), each change a read-modify-write with the ETag
// read, so the dedupe check and the insert are one atomic write.
type DeadLetters struct{ state *daprstate.Store }

// NewDeadLetters returns a dead-letter store over state.
func NewDeadLetters(state *daprstate.Store) *DeadLetters { return &DeadLetters{state: state} }

// DeadLetterKey is the state key of a dead-letter topic's list.
func DeadLetterKey(topic string) string { return "deadletters:" + topic }

// Add implements deadletter.Store.
func (s *DeadLetters) Add(ctx context.Context, l deadletter.Letter) (bool, error) {
	var added bool
	_, err := daprstate.Mutate(ctx, s.state, DeadLetterKey(l.Topic), attempts, func(ls *deadletter.List, _ bool) error {
		added = ls.Add(l)
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

// List implements deadletter.Store.
func (s *DeadLetters) List(ctx context.Context, topic string) ([]deadletter.Letter, error) {
	var ls deadletter.List
	_, err := s.state.Get(ctx, DeadLetterKey(topic), &ls)
	if errors.Is(err, daprstate.ErrNotFound) {
		return nil, nil
	}
	return ls.Items, err
}
