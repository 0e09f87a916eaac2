package relay_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/relay"
	"github.com/groupbuy/groupbuy/pkg/events"
)

// fakePub records what it published; failing ids fail while listed.
type fakePub struct {
	mu      sync.Mutex
	got     []string
	tries   map[string]int
	failing map[string]bool
}

func (p *fakePub) Publish(_ context.Context, evs []events.GroupV1) []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := make([]error, len(evs))
	for i, e := range evs {
		p.tries[e.EventID]++
		if p.failing[e.EventID] {
			errs[i] = errors.New("refused")
			continue
		}
		p.got = append(p.got, e.EventID)
	}
	return errs
}

func (p *fakePub) setFailing(id string, fail bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing[id] = fail
}

func (p *fakePub) published() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func ev(id string) events.GroupV1 {
	return events.GroupV1{EventID: id, GroupID: "g-" + id, Type: events.TopicGroupJoined}
}

func start(t *testing.T, cfg relay.Config) (*relay.Relay, *fakePub) {
	t.Helper()
	pub := &fakePub{failing: map[string]bool{}, tries: map[string]int{}}
	r, err := relay.New(cfg, pub, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r, pub
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestHandedEventsArePublishedOnce(t *testing.T) {
	t.Parallel()
	r, pub := start(t, relay.DefaultConfig)
	ctx := context.Background()
	var all []events.GroupV1
	for _, id := range []string{"a", "b", "c", "d"} {
		all = append(all, ev(id))
	}
	r.Hand(ctx, all)
	waitFor(t, "every event published", func() bool { return len(pub.published()) == 4 })
	for _, e := range all {
		if !r.Published(e.EventID) {
			t.Errorf("%s not known published", e.EventID)
		}
	}
	// Handed over again (the next turns of the groups): nothing is published twice.
	r.Hand(ctx, all)
	r.Hand(ctx, []events.GroupV1{ev("e")})
	waitFor(t, "the new event published", func() bool { return r.Published("e") })
	got := pub.published()
	slices.Sort(got)
	if !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
		t.Errorf("published %v", got)
	}
}

func TestFailedEventIsRetriedThenLeftForTheNextTurn(t *testing.T) {
	t.Parallel()
	cfg := relay.DefaultConfig
	cfg.Retry, cfg.Attempts = 5*time.Millisecond, 3
	r, pub := start(t, cfg)
	ctx := context.Background()

	// A failure that heals within the attempts is published by the relay's own retry.
	pub.setFailing("x", true)
	r.Hand(ctx, []events.GroupV1{ev("x")})
	time.Sleep(2 * time.Millisecond)
	pub.setFailing("x", false)
	waitFor(t, "x published on a retry", func() bool { return r.Published("x") })

	// One that does not is given up (left in its outbox) and taken again when handed over.
	pub.setFailing("y", true)
	r.Hand(ctx, []events.GroupV1{ev("y")})
	waitFor(t, "y's attempts spent", func() bool {
		pub.mu.Lock()
		defer pub.mu.Unlock()
		return pub.tries["y"] >= cfg.Attempts
	})
	time.Sleep(20 * time.Millisecond)
	pub.mu.Lock()
	tries := pub.tries["y"]
	pub.mu.Unlock()
	if r.Published("y") || tries != cfg.Attempts {
		t.Fatalf("y published %t after %d tries, want not published after %d", r.Published("y"), tries, cfg.Attempts)
	}
	pub.setFailing("y", false)
	r.Hand(ctx, []events.GroupV1{ev("y")})
	waitFor(t, "y published once handed over again", func() bool { return r.Published("y") })
}

func TestRemembersABoundedNumberOfIDs(t *testing.T) {
	t.Parallel()
	cfg := relay.DefaultConfig
	cfg.Remember = 2
	r, pub := start(t, cfg)
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		r.Hand(ctx, []events.GroupV1{ev(id)})
		waitFor(t, id+" published", func() bool { return r.Published(id) })
	}
	if r.Published("a") {
		t.Errorf("a still remembered past the bound")
	}
	// Past the bound, a repeat is published again (consumers drop it by event id).
	r.Hand(ctx, []events.GroupV1{ev("a")})
	waitFor(t, "a published again", func() bool { return len(pub.published()) == 4 })
}

func TestConfigIsChecked(t *testing.T) {
	t.Parallel()
	cfg := relay.DefaultConfig
	cfg.Workers = 0
	if _, err := relay.New(cfg, &fakePub{}, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Error("zero workers accepted")
	}
}
