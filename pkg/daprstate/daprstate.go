// Package daprstate stores JSON documents in a Dapr state store with ETag optimistic
// concurrency, translating Dapr's errors into the sentinels below.
//
// Redis quirks this package encodes (components-contrib state.redis):
//   - An ETag is ignored unless the write asks for first-write concurrency, so every write here
//     does; an ETag mismatch comes back as gRPC Aborted and becomes ErrConflict.
//   - Create (first-write without an ETag) fails when the key exists; the failure is not typed,
//     so Create re-reads the key to tell "exists" from an outage.
//   - A key created with first-write can only be changed with its ETag afterwards, which is
//     what optimistic concurrency wants anyway: read, change, Update with the ETag you read.
package daprstate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors.
var (
	ErrNotFound = errors.New("state: not found")
	ErrConflict = errors.New("state: etag conflict")
	ErrExists   = errors.New("state: key exists")
)

// Client is the part of the Dapr client this package needs.
type Client interface {
	GetState(ctx context.Context, storeName, key string, meta map[string]string) (*dapr.StateItem, error)
	SaveStateWithETag(ctx context.Context, storeName, key string, data []byte, etag string, meta map[string]string, so ...dapr.StateOption) error
	DeleteStateWithETag(ctx context.Context, storeName, key string, etag *dapr.ETag, meta map[string]string, opts *dapr.StateOptions) error
}

// Store is a JSON document store over one Dapr state store component.
type Store struct {
	client Client
	name   string
}

// New returns a store for the named component.
func New(c Client, component string) *Store { return &Store{client: c, name: component} }

// Option tunes a write.
type Option func(meta map[string]string)

// TTL makes the written key expire after d (Dapr's ttlInSeconds; Redis EXPIRE). Every write
// of a key with a TTL must pass it again: a write without it keeps the key forever.
func TTL(d time.Duration) Option {
	return func(meta map[string]string) {
		meta["ttlInSeconds"] = strconv.Itoa(int((d + time.Second - 1) / time.Second))
	}
}

func writeMeta(opts []Option) map[string]string {
	if len(opts) == 0 {
		return nil
	}
	meta := map[string]string{}
	for _, o := range opts {
		o(meta)
	}
	return meta
}

// Get decodes the document at key into v and returns its ETag, or ErrNotFound.
func (s *Store) Get(ctx context.Context, key string, v any) (string, error) {
	item, err := s.client.GetState(ctx, s.name, key, nil)
	if err != nil {
		return "", fmt.Errorf("get %s: %w", key, err)
	}
	if item == nil || len(item.Value) == 0 {
		return "", ErrNotFound
	}
	if err := json.Unmarshal(item.Value, v); err != nil {
		return "", fmt.Errorf("decode %s: %w", key, err)
	}
	return item.Etag, nil
}

// Create stores v at key only if the key does not exist yet (ErrExists otherwise).
func (s *Store) Create(ctx context.Context, key string, v any, opts ...Option) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	err = s.client.SaveStateWithETag(ctx, s.name, key, data, "", writeMeta(opts), dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite))
	if err == nil {
		return nil
	}
	var existing json.RawMessage
	if _, gerr := s.Get(ctx, key, &existing); gerr == nil {
		return ErrExists
	}
	return fmt.Errorf("create %s: %w", key, err)
}

// Update replaces the document at key if its ETag still equals etag (ErrConflict otherwise).
func (s *Store) Update(ctx context.Context, key string, v any, etag string, opts ...Option) error {
	if etag == "" {
		return fmt.Errorf("update %s: an etag is required", key)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	err = s.client.SaveStateWithETag(ctx, s.name, key, data, etag, writeMeta(opts), dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite))
	return translate(key, err)
}

// Delete removes the document at key if its ETag still equals etag.
func (s *Store) Delete(ctx context.Context, key, etag string) error {
	err := s.client.DeleteStateWithETag(ctx, s.name, key, &dapr.ETag{Value: etag}, nil,
		&dapr.StateOptions{Concurrency: dapr.StateConcurrencyFirstWrite})
	return translate(key, err)
}

// Remove deletes the document at key whatever its ETag; a missing document is no error.
func (s *Store) Remove(ctx context.Context, key string) error {
	return translate(key, s.client.DeleteStateWithETag(ctx, s.name, key, nil, nil, nil))
}

func translate(key string, err error) error {
	if err == nil {
		return nil
	}
	if status.Code(err) == codes.Aborted {
		return fmt.Errorf("%s: %w", key, ErrConflict)
	}
	return fmt.Errorf("save %s: %w", key, err)
}

// Mutate reads the document at key, applies fn and writes it back with the ETag it read,
// re-reading and re-applying on conflict up to attempts times. fn sees found=false for a
// missing key (then the write is a Create). Returning ErrNoChange from fn skips the write;
// returning ErrDelete deletes the document with the ETag read (a missing one stays missing).
func Mutate[T any](ctx context.Context, s *Store, key string, attempts int, fn func(doc *T, found bool) error, opts ...Option) (T, error) {
	var zero T
	for attempt := range attempts {
		var doc T
		etag, err := s.Get(ctx, key, &doc)
		found := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return zero, err
		}
		switch ferr := fn(&doc, found); {
		case errors.Is(ferr, ErrNoChange), errors.Is(ferr, ErrDelete) && !found:
			return doc, nil
		case errors.Is(ferr, ErrDelete):
			err = s.Delete(ctx, key, etag)
		case ferr != nil:
			return zero, ferr
		case found:
			err = s.Update(ctx, key, doc, etag, opts...)
		default:
			err = s.Create(ctx, key, doc, opts...)
		}
		switch {
		case err == nil:
			return doc, nil
		case errors.Is(err, ErrConflict), errors.Is(err, ErrExists):
			if err := Backoff(ctx, attempt); err != nil {
				return zero, err
			}
			continue
		default:
			return zero, err
		}
	}
	return zero, fmt.Errorf("%s: %w after %d attempts", key, ErrConflict, attempts)
}

// Backoff sleeps before CAS retry number attempt (0-based): exponential from 1ms, capped at
// 64ms, with full jitter so contending writers spread out. It returns ctx's error if ctx ends.
func Backoff(ctx context.Context, attempt int) error {
	d := time.Duration(1<<min(attempt, 6)) * time.Millisecond
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// ErrNoChange tells Mutate that fn decided nothing needs writing.
var ErrNoChange = errors.New("state: no change")

// ErrDelete tells Mutate that fn decided the document goes.
var ErrDelete = errors.New("state: delete")
