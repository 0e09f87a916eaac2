// Package deadlettertest holds what tests of the dead-letter keeper share: Fake, an in-memory
// deadletter.Store with an injectable outage; Publisher, a recording deadletter.Publisher; and
// Contract, the behaviour every deadletter.Store must show, run against the fake and the Dapr
// adapter (apps/notify/internal/daprstore).
package deadlettertest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/notify/internal/deadletter"
)

// ErrOutage is what Fake and Publisher answer while failing.
var ErrOutage = errors.New("rpc error: code = Unavailable desc = sidecar unreachable")

// Fake is an in-memory deadletter.Store. Lists are kept as JSON, so callers never share memory
// with it; Update holds the lock across fn, which makes it trivially atomic.
type Fake struct {
	mu    sync.Mutex
	lists map[string][]byte
	fail  bool
}

var _ deadletter.Store = (*Fake)(nil)

// NewFake returns an empty fake store.
func NewFake() *Fake { return &Fake{lists: map[string][]byte{}} }

// SetFail makes every later call fail with ErrOutage (true) or work again (false).
func (f *Fake) SetFail(fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = fail
}

// Update implements deadletter.Store.
func (f *Fake) Update(_ context.Context, topic string, fn func(*deadletter.List) error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return ErrOutage
	}
	var ls deadletter.List
	if raw, ok := f.lists[topic]; ok {
		if err := json.Unmarshal(raw, &ls); err != nil {
			return err
		}
	}
	if err := fn(&ls); err != nil {
		if errors.Is(err, deadletter.ErrNoChange) {
			return nil
		}
		return err
	}
	raw, err := json.Marshal(ls)
	if err != nil {
		return err
	}
	f.lists[topic] = raw
	return nil
}

// List implements deadletter.Store.
func (f *Fake) List(_ context.Context, topic string) ([]deadletter.Letter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return nil, ErrOutage
	}
	raw, ok := f.lists[topic]
	if !ok {
		return nil, nil
	}
	var ls deadletter.List
	if err := json.Unmarshal(raw, &ls); err != nil {
		return nil, err
	}
	return ls.Items, nil
}

// Published is one event a Publisher was asked to publish.
type Published struct {
	Topic string
	Event string
}

// Publisher records what it publishes. Err, when set, fails every publish; FailAfter > 0 lets
// that many publishes through first. During makes a test act while a publish is under way
// (before it is recorded), e.g. deliver the letter again.
type Publisher struct {
	mu        sync.Mutex
	got       []Published
	Err       error
	FailAfter int
	During    func(topic string, event []byte)
}

var _ deadletter.Publisher = (*Publisher)(nil)

// PublishCloudEvent implements deadletter.Publisher.
func (p *Publisher) PublishCloudEvent(_ context.Context, topic string, event []byte) error {
	if p.During != nil {
		p.During(topic, event)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.Err != nil && len(p.got) >= p.FailAfter {
		return p.Err
	}
	p.got = append(p.got, Published{Topic: topic, Event: string(event)})
	return nil
}

// Got returns what was published, in order.
func (p *Publisher) Got() []Published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Published(nil), p.got...)
}

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

func letter(topic, id string) deadletter.Letter {
	return deadletter.Letter{Topic: topic, ID: id, Data: `{"v":1}`, Event: json.RawMessage(`{"id":"` + id + `","specversion":"1.0"}`),
		ReceivedAt: t0, Status: deadletter.StatusPending}
}

func add(l deadletter.Letter) func(*deadletter.List) error {
	return func(ls *deadletter.List) error {
		if !ls.Add(l) {
			return deadletter.ErrNoChange
		}
		return nil
	}
}

func ids(ls []deadletter.Letter) []string {
	out := []string{}
	for _, l := range ls {
		out = append(out, l.ID)
	}
	return out
}

// Contract runs the behaviour every deadletter.Store must show against the stores newStore
// returns (a fresh, empty one per call).
func Contract(t *testing.T, newStore func(*testing.T) deadletter.Store) {
	const topic, other = "order.created.dead", "group.failed.dead"
	ctx := context.Background()

	t.Run("unknown topic lists empty", func(t *testing.T) {
		t.Parallel()
		got, err := newStore(t).List(ctx, topic)
		if err != nil || len(got) != 0 {
			t.Errorf("List = %v, %v; want empty, nil", got, err)
		}
	})

	t.Run("update stores the list as fn left it, round trip intact", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		at := t0.Add(time.Minute)
		for _, id := range []string{"a", "b"} {
			if err := s.Update(ctx, topic, add(letter(topic, id))); err != nil {
				t.Fatalf("Update(add %s): %v", id, err)
			}
		}
		err := s.Update(ctx, topic, func(ls *deadletter.List) error {
			if _, ok := ls.BeginReplay("a"); !ok || !ls.FinishReplay("a", t0, true, at) {
				t.Error("letter a is not on the stored list")
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.List(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		a, b := letter(topic, "a"), letter(topic, "b")
		a.Status, a.Replays, a.ReplayedAt = deadletter.StatusReplayed, 1, &at
		if diff := cmp.Diff([]deadletter.Letter{b, a}, got); diff != "" {
			t.Errorf("List (-want +got):\n%s", diff)
		}
	})

	t.Run("no change and errors write nothing", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if err := s.Update(ctx, topic, add(letter(topic, "a"))); err != nil {
			t.Fatal(err)
		}
		boom := errors.New("boom")
		for _, ret := range []error{deadletter.ErrNoChange, boom} {
			err := s.Update(ctx, topic, func(ls *deadletter.List) error {
				ls.Items = nil
				return ret
			})
			if ret == boom && !errors.Is(err, boom) {
				t.Errorf("Update returning boom = %v, want boom", err)
			}
			if ret != boom && err != nil {
				t.Errorf("Update returning ErrNoChange = %v, want nil", err)
			}
		}
		if got, err := s.List(ctx, topic); err != nil || !cmp.Equal(ids(got), []string{"a"}) {
			t.Errorf("List = %v, %v; want [a]", ids(got), err)
		}
	})

	t.Run("topics are kept apart", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		if err := s.Update(ctx, topic, add(letter(topic, "a"))); err != nil {
			t.Fatal(err)
		}
		if err := s.Update(ctx, other, add(letter(other, "b"))); err != nil {
			t.Fatal(err)
		}
		for tp, want := range map[string][]string{topic: {"a"}, other: {"b"}} {
			if got, err := s.List(ctx, tp); err != nil || !cmp.Equal(ids(got), want) {
				t.Errorf("List(%s) = %v, %v; want %v", tp, ids(got), err, want)
			}
		}
	})

	t.Run("concurrent updates all land", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		const n = 6
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- s.Update(ctx, topic, add(letter(topic, fmt.Sprint(i))))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Update: %v", err)
			}
		}
		if got, err := s.List(ctx, topic); err != nil || len(got) != n {
			t.Errorf("List = %v, %v; want %d letters", ids(got), err, n)
		}
	})
}
