package daprstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost/statetest"
	"github.com/groupbuy/groupbuy/apps/group/internal/daprstore"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

const storeName = "statestore"

var at = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openGroup(id string) group.Group {
	return group.Group{ID: id, DealID: "d1", Status: group.StatusOpen, GroupSize: 2, ExpiresAt: at.Add(time.Hour),
		Seats:    []group.Seat{{UserID: "u1", OrderID: "o1", State: group.SeatHeld, JoinedAt: at}},
		LeaderID: "u1", LeaderOrderID: "o1", Opened: true, CreatedAt: at}
}

// legacyStates is the actor state an earlier version of the app saved.
type legacyStates struct {
	mu     sync.Mutex
	groups map[string]group.Group
	reads  int
	err    error
}

func (l *legacyStates) Load(_ context.Context, id string) (group.Group, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reads++
	if l.err != nil {
		return group.Group{}, false, l.err
	}
	g, ok := l.groups[id]
	return g, ok, nil
}

func TestGroupsContract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		legacy daprstore.LegacyStates
	}{
		{name: "without legacy state"},
		{name: "with an empty legacy state", legacy: &legacyStates{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			statetest.Contract(t, func(*testing.T) actorhost.State {
				return daprstore.NewGroups(daprstate.New(daprstatetest.NewClient(), storeName), tt.legacy)
			})
		})
	}
}

func TestGroupsStoredDocument(t *testing.T) {
	t.Parallel()
	fc := daprstatetest.NewClient()
	groups := daprstore.NewGroups(daprstate.New(fc, storeName), nil)
	ctx := testContext(t)
	g := openGroup("g1")

	if _, err := groups.Save(ctx, "g1", g, ""); err != nil {
		t.Fatalf("Save: %v", err)
	}

	if diff := cmp.Diff(fc.Keys(storeName, ""), []string{"group:g1"}); diff != "" {
		t.Fatalf("keys (-got +want):\n%s", diff)
	}
	raw, _ := fc.Value(storeName, "group:g1")
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("decode %q: %v", raw, err)
	}
	if token, _ := doc["write"].(string); token == "" {
		t.Errorf("document %s carries no write token", raw)
	}
	delete(doc, "write")
	want, _ := json.Marshal(g)
	var wantDoc map[string]any
	_ = json.Unmarshal(want, &wantDoc)
	if diff := cmp.Diff(doc, wantDoc); diff != "" {
		t.Errorf("stored group is not the group's own JSON (-got +want):\n%s", diff)
	}
}

func TestGroupsMoveLegacyActorState(t *testing.T) {
	t.Parallel()
	fc := daprstatetest.NewClient()
	legacy := &legacyStates{groups: map[string]group.Group{"g1": openGroup("g1")}}
	groups := daprstore.NewGroups(daprstate.New(fc, storeName), legacy)
	ctx := testContext(t)

	g, version, found, err := groups.Get(ctx, "g1")
	if err != nil || !found || version != "" {
		t.Fatalf("Get = found %t, version %q, %v; want the legacy group at version \"\"", found, version, err)
	}
	if diff := cmp.Diff(g, openGroup("g1")); diff != "" {
		t.Errorf("legacy group mismatch (-got +want):\n%s", diff)
	}
	g.Seats = append(g.Seats, group.Seat{UserID: "u2", OrderID: "o2", State: group.SeatReserving, JoinedAt: at})
	// Two turns migrate the group at once (the old and the new host): one create wins.
	saved, err := groups.Save(ctx, "g1", g, version)
	if err != nil {
		t.Fatalf("first Save: %v", err)
	}
	if _, err := groups.Save(ctx, "g1", openGroup("g1"), version); !errors.Is(err, actorhost.ErrStale) {
		t.Errorf("second migrating Save error = %v, want %v", err, actorhost.ErrStale)
	}
	reads := legacy.reads
	got, gotVersion, found, err := groups.Get(ctx, "g1")
	if err != nil || !found || gotVersion != saved {
		t.Fatalf("Get after the move = found %t, version %q, %v; want version %q", found, gotVersion, err, saved)
	}
	if diff := cmp.Diff(got, g); diff != "" {
		t.Errorf("moved group mismatch (-got +want):\n%s", diff)
	}
	if legacy.reads != reads {
		t.Errorf("the legacy state was read again after the move")
	}

	legacy.err = errors.New("sidecar down")
	if _, _, _, err := groups.Get(ctx, "g2"); !errors.Is(err, legacy.err) {
		t.Errorf("Get with the legacy read failing: %v, want it to wrap %v", err, legacy.err)
	}
}

// afterSaveClient lets another writer save right after each of the caller's writes, before
// the caller can read its write back.
type afterSaveClient struct {
	*daprstatetest.Client
	afterSave func()
}

func (c *afterSaveClient) SaveStateWithETag(ctx context.Context, store, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error {
	err := c.Client.SaveStateWithETag(ctx, store, key, data, etag, meta, so...)
	if err == nil && c.afterSave != nil {
		c.afterSave()
	}
	return err
}

// A save whose write lands but is saved over before it is read back cannot name a version:
// another turn has moved on from it.
func TestGroupsSaveOverwrittenBeforeReadBack(t *testing.T) {
	t.Parallel()
	fc := &afterSaveClient{Client: daprstatetest.NewClient()}
	groups := daprstore.NewGroups(daprstate.New(fc, storeName), nil)
	ctx := testContext(t)
	version, err := groups.Save(ctx, "g1", openGroup("g1"), "")
	if err != nil {
		t.Fatalf("Save: %v", err)
	}
	other, _ := json.Marshal(map[string]any{"id": "g1", "status": "failed", "write": "another turn"})
	fc.afterSave = func() { fc.Put(storeName, "group:g1", other) }

	_, err = groups.Save(ctx, "g1", openGroup("g1"), version)

	if !errors.Is(err, actorhost.ErrStale) {
		t.Errorf("Save error = %v, want %v", err, actorhost.ErrStale)
	}
}

func TestGroupsOutagesAreNotStale(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name            string
		getErr, saveErr error
		call            func(ctx context.Context, g *daprstore.Groups) error
	}{
		{
			name: "get", getErr: daprstatetest.ErrUnavailable,
			call: func(ctx context.Context, g *daprstore.Groups) error { _, _, _, err := g.Get(ctx, "g1"); return err },
		},
		{
			name: "save", saveErr: daprstatetest.ErrUnavailable,
			call: func(ctx context.Context, g *daprstore.Groups) error {
				_, err := g.Save(ctx, "g1", openGroup("g1"), "7")
				return err
			},
		},
		{
			name: "read back", getErr: daprstatetest.ErrUnavailable,
			call: func(ctx context.Context, g *daprstore.Groups) error {
				_, err := g.Save(ctx, "g1", openGroup("g1"), "")
				return err
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fc := daprstatetest.NewClient()
			fc.SetGetErr(tt.getErr)
			fc.SetSaveErr(tt.saveErr)

			err := tt.call(testContext(t), daprstore.NewGroups(daprstate.New(fc, storeName), nil))

			if !errors.Is(err, daprstatetest.ErrUnavailable) || errors.Is(err, actorhost.ErrStale) {
				t.Errorf("error = %v, want the outage and not %v", err, actorhost.ErrStale)
			}
		})
	}
}
