package daprstore

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"

	"github.com/groupbuy/groupbuy/apps/group/internal/actorhost"
	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// GroupKey is the state key of a group's state (GroupActor's state, written only inside its
// turns).
func GroupKey(groupID string) string { return "group:" + groupID }

// LegacyStates reads a group that an earlier version of the app saved as Dapr actor state
// (dapractor.Client.Load). Such a group moves to GroupKey with its next save.
type LegacyStates interface {
	Load(ctx context.Context, groupID string) (g group.Group, found bool, err error)
}

// Groups implements actorhost.State, and group.States for listings, over the plain state API:
// unlike the actor state API, it takes an ETag, which is what makes a stale turn's save fail.
// The version a turn sees is the document's ETag.
type Groups struct {
	s      *daprstate.Store
	legacy LegacyStates
}

var (
	_ actorhost.State = (*Groups)(nil)
	_ group.States    = (*Groups)(nil)
)

// NewGroups returns the group states; legacy (nil for none) is read for a group without a
// document of its own.
func NewGroups(s *daprstate.Store, legacy LegacyStates) *Groups { return &Groups{s: s, legacy: legacy} }

// groupDoc is the stored form: the group, and a token unique to the write that stored it.
type groupDoc struct {
	group.Group
	Write string `json:"write"`
}

// Get implements actorhost.State. A group found only in the legacy actor state has version
// "": its first save creates its document, and of two turns doing that one wins.
func (x *Groups) Get(ctx context.Context, groupID string) (group.Group, string, bool, error) {
	var d groupDoc
	etag, err := x.s.Get(ctx, GroupKey(groupID), &d)
	switch {
	case err == nil:
		return d.Group, etag, true, nil
	case !errors.Is(err, daprstate.ErrNotFound):
		return group.Group{}, "", false, fmt.Errorf("state of group %s: %w", groupID, err)
	case x.legacy == nil:
		return group.Group{}, "", false, nil
	}
	g, found, err := x.legacy.Load(ctx, groupID)
	if err != nil {
		return group.Group{}, "", false, fmt.Errorf("legacy actor state of group %s: %w", groupID, err)
	}
	return g, "", found, nil
}

// Load implements group.States.
func (x *Groups) Load(ctx context.Context, groupID string) (group.Group, bool, error) {
	g, _, found, err := x.Get(ctx, groupID)
	return g, found, err
}

// Put implements actorhost.State: a first-write create for version "", else a write with the
// ETag.
func (x *Groups) Put(ctx context.Context, groupID string, g group.Group, version string) error {
	_, err := x.put(ctx, groupID, g, version)
	return err
}

func (x *Groups) put(ctx context.Context, groupID string, g group.Group, version string) (groupDoc, error) {
	d := groupDoc{Group: g, Write: rand.Text()}
	var err error
	if version == "" {
		err = x.s.Create(ctx, GroupKey(groupID), d)
	} else {
		err = x.s.Update(ctx, GroupKey(groupID), d, version)
	}
	switch {
	case errors.Is(err, daprstate.ErrExists), errors.Is(err, daprstate.ErrConflict):
		return d, fmt.Errorf("save group %s: %w", groupID, actorhost.ErrStale)
	case err != nil:
		return d, fmt.Errorf("save group %s: %w", groupID, err)
	}
	return d, nil
}

// Save implements actorhost.State: Put, then the document is read back for its ETag (Dapr
// does not answer a write with it); its write token tells this write from a later one (then
// another turn saved over this one, which is as stale as losing the write).
func (x *Groups) Save(ctx context.Context, groupID string, g group.Group, version string) (string, error) {
	key := GroupKey(groupID)
	d, err := x.put(ctx, groupID, g, version)
	if err != nil {
		return "", err
	}
	var back groupDoc
	etag, err := x.s.Get(ctx, key, &back)
	switch {
	case errors.Is(err, daprstate.ErrNotFound):
		return "", fmt.Errorf("read back group %s: the document vanished after its save", groupID)
	case err != nil:
		return "", fmt.Errorf("read back group %s: %w", groupID, err)
	case back.Write != d.Write:
		return "", fmt.Errorf("group %s saved again right after this save: %w", groupID, actorhost.ErrStale)
	}
	return etag, nil
}
