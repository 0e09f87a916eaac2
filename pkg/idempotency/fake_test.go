package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strconv"
	"strings"
	"sync"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

const component = "statestore"

// fakeClient is an in-memory daprstate.Client that mimics the Dapr Redis state store where
// daprstate relies on it (the approach of pkg/daprstate/fake_test.go):
//   - ETags are version strings that start at "1" and grow by one with every write.
//   - ETags are only checked on first-write writes; a mismatch (or an ETag for a missing key)
//     is a gRPC Aborted status, wrapped the way the go-sdk wraps it.
//   - A first-write without an ETag on an existing key fails with an untyped error.
//   - A missing key reads as an item with no value, not as an error.
//
// It records the metadata of every successful write, so tests can check TTLs. saveErr
// simulates an outage; every write yields the processor first, so concurrent
// read-modify-write cycles interleave and collide.
type fakeClient struct {
	mu     sync.Mutex
	items  map[string]fakeItem // by store + "/" + key
	writes []write

	saveErr error
}

type fakeItem struct {
	value   []byte
	version int
}

// write is one successful write.
type write struct {
	Key  string
	Meta map[string]string
}

var _ daprstate.Client = (*fakeClient)(nil)

func newFakeClient() *fakeClient { return &fakeClient{items: map[string]fakeItem{}} }

func fakeKey(store, key string) string { return store + "/" + key }

func (f *fakeClient) GetState(_ context.Context, store, key string, _ map[string]string) (*dapr.StateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[fakeKey(store, key)]
	if !ok {
		return &dapr.StateItem{Key: key}, nil
	}
	return &dapr.StateItem{Key: key, Value: append([]byte(nil), it.value...), Etag: strconv.Itoa(it.version)}, nil
}

func (f *fakeClient) SaveStateWithETag(_ context.Context, store, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error {
	runtime.Gosched()
	var opts dapr.StateOptions
	for _, o := range so {
		o(&opts)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.saveErr != nil {
		return fmt.Errorf("error saving state: %w", f.saveErr)
	}
	k := fakeKey(store, key)
	cur, exists := f.items[k]
	if opts.Concurrency == dapr.StateConcurrencyFirstWrite {
		switch {
		case etag != "" && (!exists || strconv.Itoa(cur.version) != etag):
			return fmt.Errorf("error saving state: %w",
				status.Errorf(codes.Aborted, "failed saving state in state store %s: possible etag mismatch", store))
		case etag == "" && exists:
			return fmt.Errorf("error saving state: rpc error: failed to set key %s", key)
		}
	}
	f.items[k] = fakeItem{value: append([]byte(nil), data...), version: cur.version + 1}
	f.writes = append(f.writes, write{Key: key, Meta: maps.Clone(meta)})
	return nil
}

func (f *fakeClient) DeleteStateWithETag(_ context.Context, store, key string, etag *dapr.ETag, _ map[string]string, opts *dapr.StateOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakeKey(store, key)
	cur, exists := f.items[k]
	if opts != nil && opts.Concurrency == dapr.StateConcurrencyFirstWrite && etag != nil && exists && strconv.Itoa(cur.version) != etag.Value {
		return fmt.Errorf("error deleting state: %w",
			status.Errorf(codes.Aborted, "failed deleting state with key %s: possible etag mismatch", key))
	}
	delete(f.items, k)
	return nil
}

// keys returns the stored keys with the prefix.
func (f *fakeClient) keys(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.items {
		k = strings.TrimPrefix(k, component+"/")
		if strings.HasPrefix(k, prefix) {
			out = append(out, k)
		}
	}
	return out
}

// writesTo returns the successful writes of keys with the prefix.
func (f *fakeClient) writesTo(prefix string) []write {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []write
	for _, w := range f.writes {
		if strings.HasPrefix(w.Key, prefix) {
			out = append(out, w)
		}
	}
	return out
}

// raw returns the stored value of key.
func (f *fakeClient) raw(key string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.items[fakeKey(component, key)].value...)
}

func (f *fakeClient) setSaveErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.saveErr = err
}

var errOutage = errors.New("rpc error: code = Unavailable desc = connection refused")
