package daprstate_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

const component = "statestore"

type counter struct {
	N    int    `json:"n"`
	Note string `json:"note,omitempty"`
}

func TestGet(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name     string
		setup    func(f *daprstatetest.Client)
		key      string
		want     counter
		wantEtag string
		wantErr  error // nil: success; errAny: some error other than the sentinels
	}{
		{
			name:     "present",
			setup:    func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`{"n":7}`)) },
			key:      "c",
			want:     counter{N: 7},
			wantEtag: "1",
		},
		{
			name:    "missing",
			key:     "c",
			wantErr: daprstate.ErrNotFound,
		},
		{
			name:    "other component does not count",
			setup:   func(f *daprstatetest.Client) { f.Put("otherstore", "c", []byte(`{"n":7}`)) },
			key:     "c",
			wantErr: daprstate.ErrNotFound,
		},
		{
			name:    "undecodable",
			setup:   func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`not json`)) },
			key:     "c",
			wantErr: errAny,
		},
		{
			name:    "outage",
			setup:   func(f *daprstatetest.Client) { f.SetGetErr(errOutage) },
			key:     "c",
			wantErr: errOutage,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := daprstatetest.NewClient()
			if tt.setup != nil {
				tt.setup(f)
			}
			s := daprstate.New(f, component)

			var got counter
			etag, err := s.Get(ctx, tt.key, &got)

			checkErr(t, err, tt.wantErr)
			if tt.wantErr != nil {
				return
			}
			if etag != tt.wantEtag {
				t.Errorf("etag = %q, want %q", etag, tt.wantEtag)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("document mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		setup   func(f *daprstatetest.Client)
		wantErr error
		wantRaw string // stored value afterwards ("" for none)
	}{
		{
			name:    "new key",
			wantRaw: `{"n":1}`,
		},
		{
			name:    "existing key",
			setup:   func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`{"n":9}`)) },
			wantErr: daprstate.ErrExists,
			wantRaw: `{"n":9}`,
		},
		{
			name:    "save outage is not reported as exists",
			setup:   func(f *daprstatetest.Client) { f.SetSaveErr(errOutage) },
			wantErr: errOutage,
		},
		{
			name: "save and get outage",
			setup: func(f *daprstatetest.Client) {
				f.SetSaveErr(errOutage)
				f.SetGetErr(errOutage)
			},
			wantErr: errOutage,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := daprstatetest.NewClient()
			if tt.setup != nil {
				tt.setup(f)
			}
			s := daprstate.New(f, component)

			err := s.Create(ctx, "c", counter{N: 1})

			checkErr(t, err, tt.wantErr)
			raw, _ := f.Value(component, "c")
			if got := string(raw); got != tt.wantRaw {
				t.Errorf("stored value = %q, want %q", got, tt.wantRaw)
			}
		})
	}
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name     string
		etag     func(read string) string
		setup    func(f *daprstatetest.Client)
		wantErr  error
		wantRaw  string
		wantEtag string // ETag read afterwards
	}{
		{
			name:     "etag read",
			etag:     func(read string) string { return read },
			wantRaw:  `{"n":2}`,
			wantEtag: "2",
		},
		{
			name:     "stale etag",
			etag:     func(string) string { return "0" },
			wantErr:  daprstate.ErrConflict,
			wantRaw:  `{"n":1}`,
			wantEtag: "1",
		},
		{
			name:     "key changed since it was read",
			etag:     func(read string) string { return read },
			setup:    func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`{"n":5}`)) },
			wantErr:  daprstate.ErrConflict,
			wantRaw:  `{"n":5}`,
			wantEtag: "2",
		},
		{
			name:     "no etag",
			etag:     func(string) string { return "" },
			wantErr:  errAny,
			wantRaw:  `{"n":1}`,
			wantEtag: "1",
		},
		{
			name:     "outage is not a conflict",
			etag:     func(read string) string { return read },
			setup:    func(f *daprstatetest.Client) { f.SetSaveErr(errOutage) },
			wantErr:  errOutage,
			wantRaw:  `{"n":1}`,
			wantEtag: "1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := daprstatetest.NewClient()
			s := daprstate.New(f, component)
			if err := s.Create(ctx, "c", counter{N: 1}); err != nil {
				t.Fatal(err)
			}
			var doc counter
			read, err := s.Get(ctx, "c", &doc)
			if err != nil {
				t.Fatal(err)
			}
			if tt.setup != nil {
				tt.setup(f)
			}

			err = s.Update(ctx, "c", counter{N: 2}, tt.etag(read))

			checkErr(t, err, tt.wantErr)
			raw, _ := f.Value(component, "c")
			if got := string(raw); got != tt.wantRaw {
				t.Errorf("stored value = %q, want %q", got, tt.wantRaw)
			}
			f.SetSaveErr(nil)
			if got, _ := s.Get(ctx, "c", &doc); got != tt.wantEtag {
				t.Errorf("etag afterwards = %q, want %q", got, tt.wantEtag)
			}
		})
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name      string
		etag      func(read string) string
		wantErr   error
		wantExist bool
	}{
		{"etag read", func(read string) string { return read }, nil, false},
		{"stale etag", func(string) string { return "7" }, daprstate.ErrConflict, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := daprstatetest.NewClient()
			s := daprstate.New(f, component)
			if err := s.Create(ctx, "c", counter{N: 1}); err != nil {
				t.Fatal(err)
			}
			var doc counter
			read, err := s.Get(ctx, "c", &doc)
			if err != nil {
				t.Fatal(err)
			}

			err = s.Delete(ctx, "c", tt.etag(read))

			checkErr(t, err, tt.wantErr)
			if _, got := f.Value(component, "c"); got != tt.wantExist {
				t.Errorf("key exists afterwards = %t, want %t", got, tt.wantExist)
			}
		})
	}
}

func TestMutate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	errFn := errors.New("fn refused")
	increment := func(c *counter, _ bool) error { c.N++; return nil }

	tests := []struct {
		name      string
		setup     func(f *daprstatetest.Client)
		attempts  int
		fn        func(c *counter, found bool) error
		want      counter // returned document
		wantErr   error
		wantRaw   string // stored afterwards
		wantSaves int    // successful writes by Mutate (and by setup's competing writer)
	}{
		{
			name:      "missing key is created",
			attempts:  3,
			fn:        func(c *counter, found bool) error { c.N = 1; c.Note = foundNote(found); return nil },
			want:      counter{N: 1, Note: "missing"},
			wantRaw:   `{"n":1,"note":"missing"}`,
			wantSaves: 1,
		},
		{
			name:      "existing key is updated",
			setup:     func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`{"n":4}`)) },
			attempts:  3,
			fn:        func(c *counter, found bool) error { c.N++; c.Note = foundNote(found); return nil },
			want:      counter{N: 5, Note: "found"},
			wantRaw:   `{"n":5,"note":"found"}`,
			wantSaves: 1,
		},
		{
			name:      "no change skips the write",
			setup:     func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`{"n":4}`)) },
			attempts:  3,
			fn:        func(*counter, bool) error { return daprstate.ErrNoChange },
			want:      counter{N: 4},
			wantRaw:   `{"n":4}`,
			wantSaves: 0,
		},
		{
			name:      "delete removes the document",
			setup:     func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`{"n":4}`)) },
			attempts:  3,
			fn:        func(*counter, bool) error { return daprstate.ErrDelete },
			want:      counter{N: 4},
			wantRaw:   "",
			wantSaves: 0,
		},
		{
			name:      "delete of a missing key writes nothing",
			attempts:  3,
			fn:        func(*counter, bool) error { return daprstate.ErrDelete },
			wantRaw:   "",
			wantSaves: 0,
		},
		{
			name: "delete that meets a concurrent write is retried on a fresh read",
			setup: func(f *daprstatetest.Client) {
				f.Put(component, "c", []byte(`{"n":0}`))
				f.Interfere("c", 1, func(string, []byte) []byte { return []byte(`{"n":1}`) })
			},
			attempts: 3,
			// Only an empty counter goes: the concurrent write made it non-empty.
			fn: func(c *counter, _ bool) error {
				if c.N == 0 {
					return daprstate.ErrDelete
				}
				return daprstate.ErrNoChange
			},
			want:      counter{N: 1},
			wantRaw:   `{"n":1}`,
			wantSaves: 0,
		},
		{
			name:      "fn error is returned and nothing is written",
			setup:     func(f *daprstatetest.Client) { f.Put(component, "c", []byte(`{"n":4}`)) },
			attempts:  3,
			fn:        func(*counter, bool) error { return errFn },
			wantErr:   errFn,
			wantRaw:   `{"n":4}`,
			wantSaves: 0,
		},
		{
			name: "conflict is retried on a fresh read",
			setup: func(f *daprstatetest.Client) {
				f.Put(component, "c", []byte(`{"n":4}`))
				f.BeforeSave = once(func() { f.Put(component, "c", []byte(`{"n":10}`)) })
			},
			attempts:  3,
			fn:        increment,
			want:      counter{N: 11},
			wantRaw:   `{"n":11}`,
			wantSaves: 1,
		},
		{
			name: "competing create is retried as an update",
			setup: func(f *daprstatetest.Client) {
				f.BeforeSave = once(func() { f.Put(component, "c", []byte(`{"n":10}`)) })
			},
			attempts:  3,
			fn:        increment,
			want:      counter{N: 11},
			wantRaw:   `{"n":11}`,
			wantSaves: 1,
		},
		{
			name: "gives up after the attempts",
			setup: func(f *daprstatetest.Client) {
				f.Put(component, "c", []byte(`{"n":4}`))
				f.BeforeSave = func(context.Context, string) { f.Put(component, "c", []byte(`{"n":4}`)) }
			},
			attempts:  3,
			fn:        increment,
			wantErr:   daprstate.ErrConflict,
			wantRaw:   `{"n":4}`,
			wantSaves: 0,
		},
		{
			name:     "read outage is returned",
			setup:    func(f *daprstatetest.Client) { f.SetGetErr(errOutage) },
			attempts: 3,
			fn:       increment,
			wantErr:  errOutage,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := daprstatetest.NewClient()
			if tt.setup != nil {
				tt.setup(f)
			}
			s := daprstate.New(f, component)

			got, err := daprstate.Mutate(ctx, s, "c", tt.attempts, tt.fn)

			checkErr(t, err, tt.wantErr)
			if tt.wantErr == nil {
				if diff := cmp.Diff(got, tt.want); diff != "" {
					t.Errorf("returned document mismatch (-got +want):\n%s", diff)
				}
			}
			raw, _ := f.Value(component, "c")
			if got := string(raw); got != tt.wantRaw {
				t.Errorf("stored value = %q, want %q", got, tt.wantRaw)
			}
			if got := len(f.Writes(component, "")); got != tt.wantSaves {
				t.Errorf("writes through the client = %d, want %d", got, tt.wantSaves)
			}
		})
	}
}

// Concurrent read-modify-write cycles lose no update: every conflict is retried.
func TestMutateConcurrentIncrements(t *testing.T) {
	t.Parallel()
	const workers, perWorker = 8, 25
	f := daprstatetest.NewClient()
	s := daprstate.New(f, component)
	ctx := context.Background()

	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range perWorker {
				if _, err := daprstate.Mutate(ctx, s, "c", 1000, func(c *counter, _ bool) error { c.N++; return nil }); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()

	for w, err := range errs {
		if err != nil {
			t.Errorf("worker %d: %v", w, err)
		}
	}
	var got counter
	if _, err := s.Get(ctx, "c", &got); err != nil {
		t.Fatal(err)
	}
	if want := workers * perWorker; got.N != want {
		t.Errorf("counter = %d, want %d", got.N, want)
	}
}

// errOutage is an outage of the sidecar.
var errOutage = daprstatetest.ErrUnavailable

// errAny stands for "some error that is not one of the sentinels".
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil:
		if err != nil {
			t.Fatalf("error = %v, want nil", err)
		}
	case want == errAny:
		if err == nil {
			t.Fatal("error = nil, want an error")
		}
		for _, s := range []error{daprstate.ErrNotFound, daprstate.ErrConflict, daprstate.ErrExists} {
			if errors.Is(err, s) {
				t.Fatalf("error = %v, want one that is not %v", err, s)
			}
		}
	default:
		if !errors.Is(err, want) {
			t.Fatalf("error = %v, want %v", err, want)
		}
	}
}

func foundNote(found bool) string {
	if found {
		return "found"
	}
	return "missing"
}

// once adapts fn to a BeforeSave hook that runs it on the first save only.
func once(fn func()) func(context.Context, string) {
	var o sync.Once
	return func(context.Context, string) { o.Do(fn) }
}
