// Package daprstatetest provides Client, an in-memory daprstate.Client for the tests of
// daprstate and of the adapters built on it. It behaves like the Dapr Redis state store
// (components-contrib state.redis) where daprstate depends on it, so a test against it says
// something about the real store; its own test pins that behaviour down.
package daprstatetest

import (
	"context"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// ErrUnavailable is an outage as the sidecar reports it; inject it with SetGetErr or
// SetSaveErr.
var ErrUnavailable = status.Error(codes.Unavailable, "connection refused")

// ErrReplyLost is a write whose answer never came back (the sidecar's deadline passed while
// Redis applied it); inject it with SetLostReply.
var ErrReplyLost = status.Error(codes.DeadlineExceeded, "context deadline exceeded")

// Client is an in-memory daprstate.Client that mimics the Redis state store:
//   - ETags are version strings that start at "1" and grow by one with every write of a key.
//   - ETags are only checked on first-write writes and deletes; a mismatch (or an ETag for a
//     missing key) is a gRPC Aborted status, wrapped the way the go-sdk wraps it.
//   - A first-write without an ETag on an existing key fails with an untyped error.
//   - A last-write write ignores the ETag.
//   - A missing key reads as an item with no value, not as an error.
//   - Keys of different store components are separate.
//
// It records every successful write with its metadata (ttlInSeconds and the like), so tests
// can check TTLs; it keeps no clock and expires nothing. Every write yields the processor
// first, as a round trip to the sidecar would, so concurrent read-modify-write cycles
// interleave and collide. The zero value is not usable: call NewClient.
//
// Two faults of a real deployment can be injected besides outages (SetGetErr, SetSaveErr):
//   - SetLostReply: a write lands and its caller still gets an error, so retrying it or
//     reading it back is the caller's only way to know.
//   - Interfere: another replica writes the key between a caller's read and its write,
//     changing its content (not only its ETag), so the caller's CAS fails and its re-read
//     sees what the other replica decided.
type Client struct {
	// BeforeSave, when set, runs at the start of every SaveStateWithETag call, before the
	// write is checked (set it before use). A write made there, with Put or through another
	// store, is a competing writer slipping in between the caller's read and its write.
	BeforeSave func(ctx context.Context, key string)
	// AfterGet, when set, runs after every GetState read, before it returns (set it before
	// use). Holding readers there at a barrier makes them all see the same state.
	AfterGet func(ctx context.Context, key string)

	mu        sync.Mutex
	items     map[itemKey]item
	writes    []Write
	saveCalls int
	getErr    error
	saveErr   error
	lostReply error
	rivals    []rival
}

// rival is a competing writer injected with Interfere.
type rival struct {
	prefix string
	left   int
	write  func(key string, cur []byte) []byte
}

// Write is one successful write through SaveStateWithETag.
type Write struct {
	Store string
	Key   string
	Meta  map[string]string // the write's metadata, e.g. ttlInSeconds; nil for none
}

type itemKey struct{ store, key string }

type item struct {
	value   []byte
	version int
}

var _ daprstate.Client = (*Client)(nil)

// NewClient returns an empty client.
func NewClient() *Client { return &Client{items: map[itemKey]item{}} }

// GetState reads key like the go-sdk does.
func (c *Client) GetState(ctx context.Context, store, key string, _ map[string]string) (*dapr.StateItem, error) {
	it, err := c.get(store, key)
	if c.AfterGet != nil {
		c.AfterGet(ctx, key)
	}
	return it, err
}

func (c *Client) get(store, key string) (*dapr.StateItem, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.getErr != nil {
		return nil, fmt.Errorf("error getting state: %w", c.getErr)
	}
	it, ok := c.items[itemKey{store, key}]
	if !ok {
		return &dapr.StateItem{Key: key}, nil
	}
	return &dapr.StateItem{Key: key, Value: slices.Clone(it.value), Etag: strconv.Itoa(it.version)}, nil
}

// SaveStateWithETag writes data at key with the Redis store's ETag rules (see Client).
func (c *Client) SaveStateWithETag(ctx context.Context, store, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error {
	runtime.Gosched()
	if c.BeforeSave != nil {
		c.BeforeSave(ctx, key)
	}
	var opts dapr.StateOptions
	for _, o := range so {
		o(&opts)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saveCalls++
	if c.saveErr != nil {
		return fmt.Errorf("error saving state: %w", c.saveErr)
	}
	k := itemKey{store, key}
	c.interfereLocked(k)
	cur, exists := c.items[k]
	if opts.Concurrency == dapr.StateConcurrencyFirstWrite {
		switch {
		case etag != "" && (!exists || strconv.Itoa(cur.version) != etag):
			return fmt.Errorf("error saving state: %w",
				status.Errorf(codes.Aborted, "failed saving state in state store %s: possible etag mismatch", store))
		case etag == "" && exists:
			return fmt.Errorf("error saving state: rpc error: failed to set key %s", key)
		}
	}
	c.items[k] = item{value: slices.Clone(data), version: cur.version + 1}
	c.writes = append(c.writes, Write{Store: store, Key: key, Meta: maps.Clone(meta)})
	if c.lostReply != nil {
		return fmt.Errorf("error saving state: %w", c.lostReply)
	}
	return nil
}

// interfereLocked lets the first rival whose prefix matches k write k before the caller's
// write is checked.
func (c *Client) interfereLocked(k itemKey) {
	for i := range c.rivals {
		r := &c.rivals[i]
		if r.left == 0 || !strings.HasPrefix(k.key, r.prefix) {
			continue
		}
		r.left--
		cur, exists := c.items[k]
		var value []byte
		if exists {
			value = slices.Clone(cur.value)
		}
		c.items[k] = item{value: r.write(k.key, value), version: cur.version + 1}
		return
	}
}

// DeleteStateWithETag removes key; with first-write concurrency a stale ETag of an existing
// key is a conflict.
func (c *Client) DeleteStateWithETag(_ context.Context, store, key string, etag *dapr.ETag, _ map[string]string, opts *dapr.StateOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := itemKey{store, key}
	c.interfereLocked(k)
	cur, exists := c.items[k]
	if opts != nil && opts.Concurrency == dapr.StateConcurrencyFirstWrite && etag != nil && exists && strconv.Itoa(cur.version) != etag.Value {
		return fmt.Errorf("error deleting state: %w",
			status.Errorf(codes.Aborted, "failed deleting state with key %s: possible etag mismatch", key))
	}
	delete(c.items, k)
	if c.lostReply != nil {
		return fmt.Errorf("error deleting state: %w", c.lostReply)
	}
	return nil
}

// SetGetErr makes every read fail with err (wrapped as the go-sdk wraps it) until it is
// set to nil.
func (c *Client) SetGetErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.getErr = err
}

// SetSaveErr makes every write fail with err (wrapped as the go-sdk wraps it) until it is
// set to nil.
func (c *Client) SetSaveErr(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.saveErr = err
}

// SetLostReply makes every write and delete take effect and then fail with err (wrapped as
// the go-sdk wraps it), as when the answer is lost on the way back, until it is set to nil.
// Writes that are refused (an ETag mismatch, an outage set by SetSaveErr) fail as before.
func (c *Client) SetLostReply(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lostReply = err
}

// Interfere makes the next n writes or deletes of keys that start with prefix lose to another
// replica: just before each is checked, write replaces the key's value (nil when the key is
// missing) with what that replica stored, and the key's ETag moves on. A caller's first-write
// CAS then fails with an ETag mismatch (or, creating the key, with the untyped "exists"
// error) and its re-read sees the other replica's content. Rivals registered earlier act
// first; each acts on one write at a time.
func (c *Client) Interfere(prefix string, n int, write func(key string, cur []byte) []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rivals = append(c.rivals, rival{prefix: prefix, left: n, write: write})
}

// Put writes value at key as another client would, whatever the key's ETag, and returns the
// new ETag. It is not recorded in Writes and fails for no injected error.
func (c *Client) Put(store, key string, value []byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := itemKey{store, key}
	v := c.items[k].version + 1
	c.items[k] = item{value: slices.Clone(value), version: v}
	return strconv.Itoa(v)
}

// Value returns the stored value of key and whether the key exists.
func (c *Client) Value(store, key string) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	it, ok := c.items[itemKey{store, key}]
	return slices.Clone(it.value), ok
}

// Keys returns the store's keys that start with prefix, sorted.
func (c *Client) Keys(store, prefix string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for k := range c.items {
		if k.store == store && strings.HasPrefix(k.key, prefix) {
			out = append(out, k.key)
		}
	}
	slices.Sort(out)
	return out
}

// Writes returns the successful writes to the store's keys that start with prefix, in order.
func (c *Client) Writes(store, prefix string) []Write {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Write
	for _, w := range c.writes {
		if w.Store == store && strings.HasPrefix(w.Key, prefix) {
			out = append(out, Write{Store: w.Store, Key: w.Key, Meta: maps.Clone(w.Meta)})
		}
	}
	return out
}

// SaveCalls returns how many times SaveStateWithETag was called, failed calls included.
func (c *Client) SaveCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.saveCalls
}
