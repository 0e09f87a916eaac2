package daprstatetest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	dapr "github.com/dapr/go-sdk/client"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
)

const component = "statestore"

var fw = dapr.WithConcurrency(dapr.StateConcurrencyFirstWrite)

// newStore returns a fake and a daprstate.Store over it.
func newStore() (*daprstatetest.Client, *daprstate.Store) {
	f := daprstatetest.NewClient()
	return f, daprstate.New(f, component)
}

// The fake must behave like Redis where daprstate depends on it, or the tests that use it
// prove nothing.
func TestClientMimicsRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := daprstatetest.NewClient()

	if err := f.SaveStateWithETag(ctx, component, "k", []byte(`1`), "", nil, fw); err != nil {
		t.Fatalf("first write: %v", err)
	}
	item, err := f.GetState(ctx, component, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := item.Etag, "1"; got != want {
		t.Errorf("etag after first write = %q, want %q", got, want)
	}
	if err := f.SaveStateWithETag(ctx, component, "k", []byte(`2`), "1", nil, fw); err != nil {
		t.Fatalf("write with current etag: %v", err)
	}
	item, _ = f.GetState(ctx, component, "k", nil)
	if got, want := item.Etag, "2"; got != want {
		t.Errorf("etag after second write = %q, want %q", got, want)
	}

	err = f.SaveStateWithETag(ctx, component, "k", []byte(`3`), "1", nil, fw)
	if got, want := status.Code(err), codes.Aborted; got != want {
		t.Errorf("stale etag: status code = %v, want %v (err %v)", got, want, err)
	}
	err = f.SaveStateWithETag(ctx, component, "k", []byte(`3`), "", nil, fw)
	if err == nil {
		t.Error("first-write without etag on an existing key: error = nil, want an error")
	} else if got, want := status.Code(err), codes.Unknown; got != want {
		t.Errorf("first-write without etag on an existing key: status code = %v, want %v (untyped)", got, want)
	}
	// Last-write ignores the ETag.
	if err := f.SaveStateWithETag(ctx, component, "k", []byte(`4`), "1", nil); err != nil {
		t.Errorf("last-write with stale etag: %v", err)
	}
	missing, err := f.GetState(ctx, component, "missing", nil)
	if err != nil || len(missing.Value) != 0 {
		t.Errorf("missing key = %+v, %v, want an empty item and no error", missing, err)
	}
}

// The go-sdk wraps the sidecar's status ("error saving state: rpc error: ..."), so callers
// must look through the wrapping, as status.Code does.
func TestClientWrapsStatusLikeTheSDK(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := daprstatetest.NewClient()
	if err := f.SaveStateWithETag(ctx, component, "k", []byte(`1`), "", nil, fw); err != nil {
		t.Fatal(err)
	}

	err := f.SaveStateWithETag(ctx, component, "k", []byte(`2`), "7", nil, fw)

	if _, direct := err.(interface{ GRPCStatus() *status.Status }); direct {
		t.Errorf("conflict %v is a bare status, want it wrapped", err)
	}
	if !strings.HasPrefix(err.Error(), "error saving state: ") {
		t.Errorf("conflict = %q, want the go-sdk's prefix", err)
	}
	if got, want := status.Code(errors.Unwrap(err)), codes.Aborted; got != want {
		t.Errorf("wrapped status code = %v, want %v", got, want)
	}
}

func TestClientDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const (
		firstWrite = dapr.StateConcurrencyFirstWrite
		lastWrite  = dapr.StateConcurrencyLastWrite
	)
	tests := []struct {
		name        string
		key         string
		etag        string
		concurrency dapr.StateConcurrency
		wantCode    codes.Code // codes.OK: no error
		wantExist   bool       // whether k, stored at etag "1", is left
	}{
		{"current etag", "k", "1", firstWrite, codes.OK, false},
		{"stale etag", "k", "7", firstWrite, codes.Aborted, true},
		{"last-write ignores the etag", "k", "7", lastWrite, codes.OK, false},
		{"missing key", "other", "1", firstWrite, codes.OK, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := daprstatetest.NewClient()
			f.Put(component, "k", []byte(`1`))

			err := f.DeleteStateWithETag(ctx, component, tt.key, &dapr.ETag{Value: tt.etag}, nil,
				&dapr.StateOptions{Concurrency: tt.concurrency})

			if got := status.Code(err); got != tt.wantCode {
				t.Errorf("status code = %v, want %v (err %v)", got, tt.wantCode, err)
			}
			if _, got := f.Value(component, "k"); got != tt.wantExist {
				t.Errorf("k exists afterwards = %t, want %t", got, tt.wantExist)
			}
		})
	}
}

func TestClientKeepsStoresApart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := daprstatetest.NewClient()
	if got, want := f.Put("otherstore", "k", []byte(`1`)), "1"; got != want {
		t.Errorf("Put etag = %q, want %q", got, want)
	}

	if err := f.SaveStateWithETag(ctx, component, "k", []byte(`2`), "", nil, fw); err != nil {
		t.Errorf("first write of k in %s: %v, want the other store's k not to count", component, err)
	}
	item, err := f.GetState(ctx, "otherstore", "k", nil)
	if err != nil || string(item.Value) != `1` || item.Etag != "1" {
		t.Errorf("otherstore k = %+v, %v; want value 1 at etag 1", item, err)
	}
	if got, want := f.Keys(component, ""), []string{"k"}; !cmp.Equal(got, want) {
		t.Errorf("Keys(%s) = %v, want %v", component, got, want)
	}
	if got := f.Writes("otherstore", ""); len(got) != 0 {
		t.Errorf("Writes(otherstore) = %v, want none: Put is another client", got)
	}
}

func TestClientInjectedErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := daprstatetest.NewClient()
	f.Put(component, "k", []byte(`1`))

	f.SetGetErr(daprstatetest.ErrUnavailable)
	f.SetSaveErr(daprstatetest.ErrUnavailable)
	_, getErr := f.GetState(ctx, component, "k", nil)
	saveErr := f.SaveStateWithETag(ctx, component, "k", []byte(`2`), "1", nil, fw)

	for name, err := range map[string]error{"read": getErr, "write": saveErr} {
		if !errors.Is(err, daprstatetest.ErrUnavailable) {
			t.Errorf("%s error = %v, want %v", name, err, daprstatetest.ErrUnavailable)
		}
		if got, want := status.Code(err), codes.Unavailable; got != want {
			t.Errorf("%s status code = %v, want %v", name, got, want)
		}
	}
	if got, _ := f.Value(component, "k"); string(got) != `1` {
		t.Errorf("value after a failed write = %s, want 1", got)
	}

	f.SetGetErr(nil)
	f.SetSaveErr(nil)
	if err := f.SaveStateWithETag(ctx, component, "k", []byte(`2`), "1", nil, fw); err != nil {
		t.Errorf("write after the outage: %v", err)
	}
	if got, want := f.SaveCalls(), 2; got != want {
		t.Errorf("SaveCalls = %d, want %d (failed ones included)", got, want)
	}
	if got, want := len(f.Writes(component, "")), 1; got != want {
		t.Errorf("successful writes = %d, want %d", got, want)
	}
}

// Writes keep what daprstate sent, TTL metadata included, so tests can check that every write
// of an expiring key passes the TTL again.
func TestClientRecordsWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s := newStore()

	if err := s.Create(ctx, "idem:1", 1, daprstate.TTL(24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "order:1", 1); err != nil {
		t.Fatal(err)
	}
	var n int
	etag, err := s.Get(ctx, "idem:1", &n)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, "idem:1", 2, etag); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, "idem:1", 3, etag, daprstate.TTL(time.Hour)); !errors.Is(err, daprstate.ErrConflict) {
		t.Fatalf("stale Update error = %v, want %v", err, daprstate.ErrConflict)
	}

	want := []daprstatetest.Write{
		{Store: component, Key: "idem:1", Meta: map[string]string{"ttlInSeconds": "86400"}},
		{Store: component, Key: "idem:1"},
	}
	if diff := cmp.Diff(f.Writes(component, "idem:"), want); diff != "" {
		t.Errorf("writes mismatch (-got +want):\n%s", diff)
	}
	if got, want := f.Keys(component, ""), []string{"idem:1", "order:1"}; !cmp.Equal(got, want) {
		t.Errorf("Keys = %v, want %v", got, want)
	}
}

// BeforeSave runs between a caller's read and its write, so a write made there competes;
// AfterGet runs after every read.
func TestClientHooks(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s := newStore()
	f.Put(component, "k", []byte(`1`))
	var reads, saves []string
	f.AfterGet = func(_ context.Context, key string) { reads = append(reads, key) }
	f.BeforeSave = func(_ context.Context, key string) {
		saves = append(saves, key)
		f.Put(component, key, []byte(`10`))
	}

	var n int
	etag, err := s.Get(ctx, "k", &n)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, "k", n+1, etag)

	if !errors.Is(err, daprstate.ErrConflict) {
		t.Errorf("Update error = %v, want %v", err, daprstate.ErrConflict)
	}
	if got, _ := f.Value(component, "k"); string(got) != `10` {
		t.Errorf("value = %s, want the competing write's 10", got)
	}
	if got, want := reads, []string{"k"}; !cmp.Equal(got, want) {
		t.Errorf("AfterGet keys = %v, want %v", got, want)
	}
	if got, want := saves, []string{"k"}; !cmp.Equal(got, want) {
		t.Errorf("BeforeSave keys = %v, want %v", got, want)
	}
}

// A lost reply is a write that took effect: the caller gets an error, a reader sees the new
// value and ETag, and the write counts as made. Refused writes stay refused.
func TestClientLostReply(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := daprstatetest.NewClient()
	f.Put(component, "k", []byte(`1`))
	f.Put(component, "gone", []byte(`1`))

	f.SetLostReply(daprstatetest.ErrReplyLost)
	saveErr := f.SaveStateWithETag(ctx, component, "k", []byte(`2`), "1", nil, fw)
	staleErr := f.SaveStateWithETag(ctx, component, "k", []byte(`3`), "1", nil, fw)
	deleteErr := f.DeleteStateWithETag(ctx, component, "gone", &dapr.ETag{Value: "1"}, nil,
		&dapr.StateOptions{Concurrency: dapr.StateConcurrencyFirstWrite})
	f.SetLostReply(nil)
	healedErr := f.SaveStateWithETag(ctx, component, "k", []byte(`4`), "2", nil, fw)

	for name, err := range map[string]error{"write": saveErr, "delete": deleteErr} {
		if !errors.Is(err, daprstatetest.ErrReplyLost) {
			t.Errorf("%s error = %v, want %v", name, err, daprstatetest.ErrReplyLost)
		}
		if got, want := status.Code(errors.Unwrap(err)), codes.DeadlineExceeded; got != want {
			t.Errorf("%s status code = %v, want %v", name, got, want)
		}
	}
	if got, want := status.Code(errors.Unwrap(staleErr)), codes.Aborted; got != want {
		t.Errorf("stale write during lost replies: status code = %v, want %v (err %v)", got, want, staleErr)
	}
	if healedErr != nil {
		t.Errorf("write with the ETag of the lost-reply write: %v, want it to be current", healedErr)
	}
	if got, _ := f.Value(component, "k"); string(got) != `4` {
		t.Errorf("k = %s, want 4", got)
	}
	if _, ok := f.Value(component, "gone"); ok {
		t.Error("the delete whose reply was lost did not take effect")
	}
	if got, want := len(f.Writes(component, "k")), 2; got != want {
		t.Errorf("recorded writes of k = %d, want %d (the lost-reply one included)", got, want)
	}
}

// A rival replica writes between the caller's read and its write: it sees the value as it
// is, its content replaces it, and the caller's CAS fails against it.
func TestClientInterfere(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s := newStore()
	f.Put(component, "doc:1", []byte(`{"n":1}`))
	var seen []string
	f.Interfere("doc:", 2, func(key string, cur []byte) []byte {
		seen = append(seen, key+"="+string(cur))
		return []byte(`{"n":100}`)
	})

	var doc struct{ N int }
	etag, err := s.Get(ctx, "doc:1", &doc)
	if err != nil {
		t.Fatal(err)
	}
	updateErr := s.Update(ctx, "doc:1", map[string]int{"n": doc.N + 1}, etag)
	createErr := s.Create(ctx, "doc:2", map[string]int{"n": 1})
	otherErr := s.Create(ctx, "other:1", map[string]int{"n": 1})
	etag, err = s.Get(ctx, "doc:1", &doc)
	if err != nil {
		t.Fatal(err)
	}
	thirdErr := s.Update(ctx, "doc:1", map[string]int{"n": doc.N + 1}, etag)

	if !errors.Is(updateErr, daprstate.ErrConflict) {
		t.Errorf("update against a rival: %v, want %v", updateErr, daprstate.ErrConflict)
	}
	if !errors.Is(createErr, daprstate.ErrExists) {
		t.Errorf("create against a rival: %v, want %v", createErr, daprstate.ErrExists)
	}
	if otherErr != nil || thirdErr != nil {
		t.Errorf("writes the rival does not touch: %v, %v; want both to succeed", otherErr, thirdErr)
	}
	if got, _ := f.Value(component, "doc:1"); string(got) != `{"n":101}` {
		t.Errorf("doc:1 = %s, want the third write on top of the rival's: {\"n\":101}", got)
	}
	if got, _ := f.Value(component, "doc:2"); string(got) != `{"n":100}` {
		t.Errorf("doc:2 = %s, want the rival's content", got)
	}
	if want := []string{`doc:1={"n":1}`, "doc:2="}; !cmp.Equal(seen, want) {
		t.Errorf("rival saw %q, want %q", seen, want)
	}
}
