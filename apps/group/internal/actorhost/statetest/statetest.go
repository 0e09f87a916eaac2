// Package statetest holds an in-memory actorhost.State with the optimistic concurrency of the
// real store (a save names the version it read and loses to any save since), and the contract
// suite every actorhost.State implementation must pass.
package statetest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
)

// Memory is an in-memory actorhost.State. Groups are kept as JSON, as the store keeps them,
// so a caller never shares memory with the stored state. Versions are "1", "2", … per group.
type Memory struct {
	// AfterGet, when set, runs after every Get, before it returns (set it before use).
	// Holding a turn there lets another turn run between its read and its save.
	AfterGet func(ctx context.Context, id string)

	mu      sync.Mutex
	docs    map[string]doc
	saves   int
	getErr  error
	saveErr error
}

type doc struct {
	raw     []byte
	version int
}

var _ actorhost.State = (*Memory)(nil)

// NewMemory returns an empty state store.
func NewMemory() *Memory { return &Memory{docs: map[string]doc{}} }

// Get implements actorhost.State.
func (m *Memory) Get(ctx context.Context, id string) (group.Group, string, bool, error) {
	m.mu.Lock()
	d, ok := m.docs[id]
	err := m.getErr
	m.mu.Unlock()
	if m.AfterGet != nil {
		m.AfterGet(ctx, id)
	}
	if err != nil {
		return group.Group{}, "", false, err
	}
	if !ok {
		return group.Group{}, "", false, nil
	}
	var g group.Group
	if err := json.Unmarshal(d.raw, &g); err != nil {
		return group.Group{}, "", false, err
	}
	return g, strconv.Itoa(d.version), true, nil
}

// Save implements actorhost.State.
func (m *Memory) Save(_ context.Context, id string, g group.Group, version string) (string, error) {
	raw, err := json.Marshal(g)
	if err != nil {
		return "", err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.saveErr != nil {
		return "", m.saveErr
	}
	cur, ok := m.docs[id]
	if (!ok && version != "") || (ok && version != strconv.Itoa(cur.version)) {
		return "", fmt.Errorf("group %s at version %q: %w", id, version, actorhost.ErrStale)
	}
	m.docs[id] = doc{raw: raw, version: cur.version + 1}
	m.saves++
	return strconv.Itoa(cur.version + 1), nil
}

// Put implements actorhost.State.
func (m *Memory) Put(ctx context.Context, id string, g group.Group, version string) error {
	_, err := m.Save(ctx, id, g, version)
	return err
}

// Group returns the stored group (the zero Group when there is none).
func (m *Memory) Group(id string) group.Group {
	m.mu.Lock()
	defer m.mu.Unlock()
	var g group.Group
	if d, ok := m.docs[id]; ok {
		_ = json.Unmarshal(d.raw, &g)
	}
	return g
}

// Saves returns the number of saves that stored a state.
func (m *Memory) Saves() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.saves
}

// FailGet makes every Get fail with err (nil heals it).
func (m *Memory) FailGet(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.getErr = err
}

// FailSave makes every Save fail with err (nil heals it).
func (m *Memory) FailSave(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.saveErr = err
}

// Concurrency is how many goroutines the contract's race case runs.
const Concurrency = 10

// Contract runs the behaviour every actorhost.State must show. newState may return the same
// store for every case, and the store may outlive the run: every case uses its own group id,
// unique to the run.
func Contract(t *testing.T, newState func(t *testing.T) actorhost.State) {
	t.Helper()
	prefix := "contract-" + rand.Text() + "-"
	at := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	groupOf := func(id string, size int) group.Group {
		return group.Group{ID: id, DealID: "d1", Status: group.StatusOpen, GroupSize: size, ExpiresAt: at.Add(time.Hour),
			Seats:    []group.Seat{{UserID: "u1", OrderID: "o1", State: group.SeatHeld, JoinedAt: at}},
			LeaderID: "u1", LeaderOrderID: "o1", Opened: true, CreatedAt: at}
	}
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		t.Cleanup(cancel)
		return c
	}
	// saved creates the group and returns the version it was stored at.
	saved := func(t *testing.T, c context.Context, s actorhost.State, g group.Group) string {
		t.Helper()
		v, err := s.Save(c, g.ID, g, "")
		if err != nil {
			t.Fatalf("Save(new %s): %v", g.ID, err)
		}
		return v
	}
	check := func(t *testing.T, c context.Context, s actorhost.State, want group.Group, wantVersion string) {
		t.Helper()
		got, version, found, err := s.Get(c, want.ID)
		if err != nil || !found {
			t.Fatalf("Get(%s) = found %t, %v; want the group", want.ID, found, err)
		}
		if diff := cmp.Diff(got, want); diff != "" {
			t.Errorf("stored group mismatch (-got +want):\n%s", diff)
		}
		if wantVersion != "" && version != wantVersion {
			t.Errorf("Get version = %q, want %q (the one Save returned)", version, wantVersion)
		}
	}

	t.Run("a group with no state is not found", func(t *testing.T) {
		t.Parallel()
		c, s := ctx(t), newState(t)
		g, version, found, err := s.Get(c, prefix+"missing")
		if err != nil || found || version != "" || g.Exists() {
			t.Errorf("Get() = %+v, %q, found %t, %v; want nothing", g, version, found, err)
		}
	})

	t.Run("saves chain on the versions they return", func(t *testing.T) {
		t.Parallel()
		c, s := ctx(t), newState(t)
		g := groupOf(prefix+"chain", 3)
		v1 := saved(t, c, s, g)
		check(t, c, s, g, v1)
		g.Seats = append(g.Seats, group.Seat{UserID: "u2", OrderID: "o2", State: group.SeatReserving, JoinedAt: at})
		v2, err := s.Save(c, g.ID, g, v1)
		if err != nil {
			t.Fatalf("Save over the version read: %v", err)
		}
		if v2 == v1 {
			t.Errorf("Save returned the version it saved over (%q)", v1)
		}
		check(t, c, s, g, v2)
		// A turn saves twice (the state with its outbox, then without): the second save
		// names the version the first returned.
		g.Outbox = nil
		g.ReminderSet = true
		v3, err := s.Save(c, g.ID, g, v2)
		if err != nil {
			t.Fatalf("Save over the version the last save returned: %v", err)
		}
		check(t, c, s, g, v3)
	})

	t.Run("a put lands over the version read and is stale over another", func(t *testing.T) {
		t.Parallel()
		c, s := ctx(t), newState(t)
		g := groupOf(prefix+"put", 3)
		if err := s.Put(c, g.ID, g, ""); err != nil {
			t.Fatalf("Put(new): %v", err)
		}
		_, v1, _, err := s.Get(c, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		g.Seats = append(g.Seats, group.Seat{UserID: "u2", OrderID: "o2", State: group.SeatHeld, JoinedAt: at})
		if err := s.Put(c, g.ID, g, v1); err != nil {
			t.Fatalf("Put over the version read: %v", err)
		}
		check(t, c, s, g, "")
		stale := g
		stale.LeaderID = "u9"
		if err := s.Put(c, g.ID, stale, v1); !errors.Is(err, actorhost.ErrStale) {
			t.Errorf("Put over a version saved over = %v, want %v", err, actorhost.ErrStale)
		}
		if err := s.Put(c, g.ID, stale, ""); !errors.Is(err, actorhost.ErrStale) {
			t.Errorf("Put(new) over a stored group = %v, want %v", err, actorhost.ErrStale)
		}
		check(t, c, s, g, "")
	})

	t.Run("two turns read one version: the second save is stale", func(t *testing.T) {
		t.Parallel()
		c, s := ctx(t), newState(t)
		g := groupOf(prefix+"stale", 2)
		saved(t, c, s, g)
		read, version, _, err := s.Get(c, g.ID)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		first, second := read, read
		first.Status = group.StatusFailed
		second.Status = group.StatusSucceeded
		if _, err := s.Save(c, g.ID, first, version); err != nil {
			t.Fatalf("first Save: %v", err)
		}
		if _, err := s.Save(c, g.ID, second, version); !errors.Is(err, actorhost.ErrStale) {
			t.Errorf("second Save error = %v, want %v", err, actorhost.ErrStale)
		}
		check(t, c, s, first, "")
	})

	t.Run("creating a group that has state is stale", func(t *testing.T) {
		t.Parallel()
		c, s := ctx(t), newState(t)
		g := groupOf(prefix+"exists", 2)
		saved(t, c, s, g)
		other := g
		other.LeaderID = "u9"
		if _, err := s.Save(c, g.ID, other, ""); !errors.Is(err, actorhost.ErrStale) {
			t.Errorf("Save(new) over a stored group error = %v, want %v", err, actorhost.ErrStale)
		}
		check(t, c, s, g, "")
	})

	t.Run("concurrent saves over one version: exactly one lands", func(t *testing.T) {
		t.Parallel()
		c, s := ctx(t), newState(t)
		g := groupOf(prefix+"race", Concurrency+1)
		version := saved(t, c, s, g)
		errs := make([]error, Concurrency)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range Concurrency {
			wg.Go(func() {
				<-start
				mine := g
				mine.LeaderID = fmt.Sprintf("u%d", i)
				_, errs[i] = s.Save(c, g.ID, mine, version)
			})
		}
		close(start)
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Errorf("saves %d and %d both landed over version %q", won, i, version)
			case err == nil:
				won = i
			case !errors.Is(err, actorhost.ErrStale):
				t.Errorf("save %d: %v, want nil or %v", i, err, actorhost.ErrStale)
			}
		}
		if won < 0 {
			t.Fatalf("no save landed")
		}
		want := g
		want.LeaderID = fmt.Sprintf("u%d", won)
		check(t, c, s, want, "")
	})
}
