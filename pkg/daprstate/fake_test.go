package daprstate_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// fakeClient is an in-memory daprstate.Client that mimics the parts of the Dapr Redis state
// store (components-contrib state.redis) this package relies on:
//   - ETags are version strings that start at "1" and grow by one with every write.
//   - ETags are only checked on first-write writes; a mismatch (or an ETag for a missing key)
//     is a gRPC Aborted status, wrapped the way the go-sdk wraps it.
//   - A first-write without an ETag on an existing key fails with an untyped error.
//   - A missing key reads as an item with no value, not as an error.
//
// getErr and saveErr simulate an outage; beforeSave lets a test slip in a competing write.
type fakeClient struct {
	mu    sync.Mutex
	items map[string]fakeItem // by store + "/" + key
	saves int                 // successful writes

	getErr     error
	saveErr    error
	beforeSave func()
}

type fakeItem struct {
	value   []byte
	version int
}

var _ daprstate.Client = (*fakeClient)(nil)

func newFakeClient() *fakeClient { return &fakeClient{items: map[string]fakeItem{}} }

func fakeKey(store, key string) string { return store + "/" + key }

func (f *fakeClient) GetState(_ context.Context, store, key string, _ map[string]string) (*dapr.StateItem, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.getErr != nil {
		return nil, fmt.Errorf("error getting state: %w", f.getErr)
	}
	it, ok := f.items[fakeKey(store, key)]
	if !ok {
		return &dapr.StateItem{Key: key}, nil
	}
	return &dapr.StateItem{Key: key, Value: append([]byte(nil), it.value...), Etag: strconv.Itoa(it.version)}, nil
}

func (f *fakeClient) SaveStateWithETag(_ context.Context, store, key string, data []byte, etag string, _ map[string]string, so ...dapr.StateOption) error {
	if f.beforeSave != nil {
		f.beforeSave()
	}
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
	f.saves++
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

// put writes a raw value as another client would, returning its new ETag.
func (f *fakeClient) put(store, key string, value []byte) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := fakeKey(store, key)
	v := f.items[k].version + 1
	f.items[k] = fakeItem{value: value, version: v}
	return strconv.Itoa(v)
}

func (f *fakeClient) raw(store, key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	it, ok := f.items[fakeKey(store, key)]
	return it.value, ok
}

func (f *fakeClient) saveCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.saves
}

var errOutage = errors.New("rpc error: code = Unavailable desc = connection refused")
