package idempotency_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/daprstate/daprstatetest"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

var t0 = time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)

const component = "statestore"

const (
	lease = 30 * time.Second
	ttl   = 24 * time.Hour
)

// record is an app's record: the shared part and the references of its first claim.
type record struct {
	idempotency.Record
	GroupID string `json:"group_id,omitempty"`
	OrderID string `json:"order_id"`
}

type store = idempotency.Store[record, *record]

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newStore() (*daprstatetest.Client, *store, *clock) {
	f := daprstatetest.NewClient()
	c := &clock{now: t0}
	return f, idempotency.New[record](daprstate.New(f, component), ttl, c.Now), c
}

// claim is a Claim of the test's lease.
func claim(userID, key, hash, owner string) idempotency.Claim {
	return idempotency.Claim{UserID: userID, Key: key, Hash: hash, Owner: owner, Lease: lease}
}

// ids allocates o1, o2, ... and is safe for concurrent use.
func ids() func(*record) {
	var mu sync.Mutex
	n := 0
	return func(r *record) {
		mu.Lock()
		defer mu.Unlock()
		n++
		r.OrderID = fmt.Sprintf("o%d", n)
	}
}

// step is one step of a scenario.
type step struct {
	op      string // begin | finish | abandon | confirm | wait
	owner   string // begin, finish, abandon, confirm: the attempt's token
	hash    string // begin
	wait    time.Duration
	want    began // begin
	wantErr error // finish, confirm
}

// began is what Begin answered.
type began struct {
	Claimed bool
	OrderID string
	Hash    string
	Owner   string
	Done    bool
	Status  int
}

func TestStore(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		steps []step
	}{
		{
			name:  "new key is claimed with new references",
			steps: []step{{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}}},
		},
		{
			name: "in flight: not claimed, same record",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "wait", wait: lease - time.Second},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "a"}},
			},
		},
		{
			name: "other body: not claimed, the stored hash tells",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "begin", owner: "b", hash: "h2", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "a"}},
			},
		},
		{
			name: "other body after the lease: still not claimed",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "wait", wait: lease},
				{op: "begin", owner: "b", hash: "h2", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "a"}},
			},
		},
		{
			name: "owner died: taken over after the lease, same references",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "wait", wait: lease},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "b"}},
				{op: "begin", owner: "c", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "b"}},
			},
		},
		{
			name: "abandoned: taken over at once",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "abandon", owner: "a"},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "b"}},
			},
		},
		{
			name: "abandon by a stale owner leaves the new owner's lease",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "wait", wait: lease},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "b"}},
				{op: "abandon", owner: "a"},
				{op: "begin", owner: "c", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "b"}},
			},
		},
		{
			name: "a known-dead owner is taken over before its lease passes",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "begin-dead-a", owner: "b", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "b"}},
				{op: "begin-dead-a", owner: "c", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "b"}},
			},
		},
		{
			name: "the owner finishes; a stale owner cannot",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "wait", wait: lease},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "b"}},
				{op: "finish", owner: "a", wantErr: idempotency.ErrNotOwner},
				{op: "finish", owner: "b"},
				{op: "begin", owner: "c", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "b", Done: true, Status: 201}},
			},
		},
		{
			name: "done: replayed, never claimed or written again",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "finish", owner: "a"},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "a", Done: true, Status: 201}},
				{op: "wait", wait: time.Hour},
				{op: "abandon", owner: "a"},
				{op: "confirm", owner: "a", wantErr: idempotency.ErrNotOwner},
				{op: "finish", owner: "a"},
				{op: "finish", owner: "b", wantErr: idempotency.ErrNotOwner},
				{op: "begin", owner: "c", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "a", Done: true, Status: 201}},
			},
		},
		{
			name: "confirm extends the owner's lease; a stale owner's fails",
			steps: []step{
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "wait", wait: lease - time.Second},
				{op: "confirm", owner: "a"},
				{op: "wait", wait: lease - time.Second},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: false, OrderID: "o1", Hash: "h1", Owner: "a"}},
				{op: "wait", wait: time.Second},
				{op: "begin", owner: "b", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "b"}},
				{op: "confirm", owner: "a", wantErr: idempotency.ErrNotOwner},
			},
		},
		{
			name: "abandon of an unknown key writes nothing",
			steps: []step{
				{op: "abandon", owner: "a"},
				{op: "begin", owner: "a", hash: "h1", want: began{Claimed: true, OrderID: "o1", Hash: "h1", Owner: "a"}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f, s, c := newStore()
			alloc := ids()

			for i, st := range tt.steps {
				switch st.op {
				case "wait":
					c.Advance(st.wait)
				case "abandon":
					if err := s.Abandon(ctx, "u1", "key", st.owner); err != nil {
						t.Fatalf("step %d: Abandon: %v", i, err)
					}
				case "finish":
					err := s.Finish(ctx, "u1", "key", st.owner, 201, []byte(`{"id":"o1"}`))
					if !errors.Is(err, st.wantErr) {
						t.Fatalf("step %d: Finish error = %v, want %v", i, err, st.wantErr)
					}
				case "confirm":
					until, err := s.Confirm(ctx, "u1", "key", st.owner, lease)
					if !errors.Is(err, st.wantErr) {
						t.Fatalf("step %d: Confirm error = %v, want %v", i, err, st.wantErr)
					}
					if err == nil && !until.Equal(c.Now().Add(lease)) {
						t.Errorf("step %d: Confirm lease until %v, want %v", i, until, c.Now().Add(lease))
					}
				case "begin", "begin-dead-a":
					cl := idempotency.Claim{UserID: "u1", Key: "key", Hash: st.hash, Owner: st.owner, Lease: lease}
					if st.op == "begin-dead-a" {
						cl.Dead = "a"
					}
					rec, claimed, err := s.Begin(ctx, cl, alloc)
					if err != nil {
						t.Fatalf("step %d: Begin: %v", i, err)
					}
					got := began{Claimed: claimed, OrderID: rec.OrderID, Hash: rec.Hash, Owner: rec.Owner, Done: rec.Done, Status: rec.Status}
					if diff := cmp.Diff(got, st.want); diff != "" {
						t.Errorf("step %d: record mismatch (-got +want):\n%s", i, diff)
					}
					if claimed && !rec.LeaseUntil.Equal(c.Now().Add(lease)) {
						t.Errorf("step %d: lease until %v, want %v", i, rec.LeaseUntil, c.Now().Add(lease))
					}
					if st.want.Done && string(rec.Body) != `{"id":"o1"}` {
						t.Errorf("step %d: body = %s, want the finished one", i, rec.Body)
					}
				default:
					t.Fatalf("unknown step %q", st.op)
				}
			}

			// Every write of a record passes the TTL again: a write without it would keep the
			// key forever.
			writes := f.Writes(component, "idem:")
			if len(writes) == 0 {
				t.Fatal("no idempotency writes")
			}
			for i, w := range writes {
				if got, want := w.Meta["ttlInSeconds"], "86400"; got != want {
					t.Errorf("write %d to %s: ttlInSeconds = %q, want %q", i, w.Key, got, want)
				}
			}
			if keys := f.Keys(component, "idem:"); len(keys) != 1 {
				t.Errorf("idempotency keys = %v, want one", keys)
			}
		})
	}
}

// The references stored are the first claim's: a takeover resumes with them (alloc may run
// again for a claim that finds the key, whose references are then discarded).
func TestBeginAllocatesOnlyOnFirstClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, s, c := newStore()
	calls := 0
	alloc := func(r *record) { calls++; r.GroupID, r.OrderID = "g1", fmt.Sprintf("o%d", calls) }

	first, claimed, err := s.Begin(ctx, claim("u1", "key", "h", "a"), alloc)
	if err != nil || !claimed {
		t.Fatalf("first Begin = %t, %v; want claimed", claimed, err)
	}
	c.Advance(lease)
	again, claimed, err := s.Begin(ctx, claim("u1", "key", "h", "b"), alloc)
	if err != nil || !claimed {
		t.Fatalf("Begin after the lease = %t, %v; want claimed", claimed, err)
	}

	if got, want := [2]string{again.GroupID, again.OrderID}, [2]string{first.GroupID, first.OrderID}; got != want {
		t.Errorf("references after takeover = %v, want %v", got, want)
	}
	if !again.CreatedAt.Equal(t0) {
		t.Errorf("created at = %v, want the first claim's %v", again.CreatedAt, t0)
	}
}

// The state key and the stored document are what the apps wrote before this package existed:
// one flat JSON object with the app's references next to the shared fields.
func TestStoredForm(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s, _ := newStore()
	alloc := func(r *record) { r.GroupID, r.OrderID = "g1", "o1" }
	if _, _, err := s.Begin(ctx, claim("u1", "key", "h", "a"), alloc); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "u1", "key", "a", 201, []byte(`{"id":"o1"}`)); err != nil {
		t.Fatal(err)
	}

	sum := sha256.Sum256([]byte("key"))
	key := "idem:u1:" + hex.EncodeToString(sum[:16])
	if got := idempotency.Key("u1", "key"); got != key {
		t.Errorf("Key = %q, want %q", got, key)
	}
	raw, _ := f.Value(component, key)
	var got map[string]any
	if err := json.Unmarshal(raw, &got); err != nil {
		t.Fatalf("stored value at %s: %v", key, err)
	}
	want := map[string]any{
		"hash":        "h",
		"owner":       "a",
		"group_id":    "g1",
		"order_id":    "o1",
		"done":        true,
		"status":      float64(201),
		"body":        "eyJpZCI6Im8xIn0=", // base64 of {"id":"o1"}
		"lease_until": t0.Add(lease).Format(time.RFC3339Nano),
		"created_at":  t0.Format(time.RFC3339Nano),
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("stored record mismatch (-got +want):\n%s", diff)
	}
}

// Keys are per user, and the raw key is not stored in the state key.
func TestKeysPerUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s, _ := newStore()
	alloc := ids()

	a, claimedA, errA := s.Begin(ctx, claim("u1", "secret-key", "h", "a"), alloc)
	b, claimedB, errB := s.Begin(ctx, claim("u2", "secret-key", "h", "b"), alloc)

	if errA != nil || errB != nil || !claimedA || !claimedB {
		t.Fatalf("Begin = (%t, %v), (%t, %v); want both claimed", claimedA, errA, claimedB, errB)
	}
	if a.OrderID == b.OrderID {
		t.Errorf("both users got order %s", a.OrderID)
	}
	for _, k := range f.Keys(component, "idem:") {
		if len(k) > 200 || strings.Contains(k, "secret-key") {
			t.Errorf("state key %q holds the raw key", k)
		}
	}
}

// Concurrent first requests with one key: exactly one owns it, all see the same references.
func TestConcurrentBegin(t *testing.T) {
	t.Parallel()
	const requests = 10
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, s, _ := newStore()
	alloc := ids()

	recs := make([]record, requests)
	claimed := make([]bool, requests)
	errs := make([]error, requests)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range requests {
		wg.Go(func() {
			<-start
			recs[i], claimed[i], errs[i] = s.Begin(ctx, claim("u1", "key", "h", fmt.Sprintf("a%d", i)), alloc)
		})
	}
	close(start)
	wg.Wait()

	owners := 0
	for i := range requests {
		if errs[i] != nil {
			t.Errorf("request %d: %v", i, errs[i])
			continue
		}
		if claimed[i] {
			owners++
		}
		if recs[i].OrderID != recs[0].OrderID {
			t.Errorf("request %d order id = %q, want %q like request 0", i, recs[i].OrderID, recs[0].OrderID)
		}
	}
	if owners != 1 {
		t.Errorf("owners = %d, want 1", owners)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name    string
		run     func(f *daprstatetest.Client, s *store) error
		wantErr error
	}{
		{
			name: "finish of a vanished record",
			run: func(_ *daprstatetest.Client, s *store) error {
				return s.Finish(ctx, "u1", "key", "a", 201, nil)
			},
			wantErr: idempotency.ErrVanished,
		},
		{
			name: "begin during an outage claims nothing",
			run: func(f *daprstatetest.Client, s *store) error {
				f.SetSaveErr(daprstatetest.ErrUnavailable)
				rec, claimed, err := s.Begin(ctx, claim("u1", "key", "h", "a"), ids())
				if claimed || rec.OrderID != "" {
					return fmt.Errorf("Begin = %+v, claimed %t; want nothing", rec, claimed)
				}
				return err
			},
			wantErr: daprstatetest.ErrUnavailable,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, s, _ := newStore()

			err := tt.run(f, s)

			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestWriteReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		status   int
		body     string
		wantType string
	}{
		{"created", http.StatusCreated, `{"id":"o1"}`, "application/json"},
		{"business outcome", http.StatusConflict, `{"code":"sold_out"}`, problem.ContentType},
		{"client error", http.StatusUnprocessableEntity, `{"code":"invalid"}`, problem.ContentType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()

			idempotency.WriteReply(rec, tt.status, []byte(tt.body))

			if got, want := rec.Code, tt.status; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			if got, want := rec.Header().Get("Content-Type"), tt.wantType; got != want {
				t.Errorf("content type = %q, want %q", got, want)
			}
			if got, want := rec.Body.String(), tt.body; got != want {
				t.Errorf("body = %q, want %q", got, want)
			}
		})
	}
}

// A claim whose write landed but whose answer was lost belongs to the attempt that made it:
// the attempt goes on, and does not lock its own key out for a lease.
func TestBeginLostReply(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(t *testing.T, s *store, c *clock) // before the Begin whose reply is lost
	}{
		{name: "new key (create)", setup: func(*testing.T, *store, *clock) {}},
		{name: "takeover after the lease (update)", setup: func(t *testing.T, s *store, c *clock) {
			if _, _, err := s.Begin(context.Background(), claim("u1", "key", "h", "a"), ids()); err != nil {
				t.Fatal(err)
			}
			c.Advance(lease)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f, s, c := newStore()
			tt.setup(t, s, c)
			f.SetLostReply(daprstatetest.ErrReplyLost)

			rec, claimed, err := s.Begin(ctx, claim("u1", "key", "h", "b"), ids())

			if err != nil || !claimed {
				t.Fatalf("Begin = claimed %t, %v; want its own claim", claimed, err)
			}
			if rec.OrderID != "o1" || rec.Owner != "b" {
				t.Errorf("record = order %q owner %q, want o1 held by b", rec.OrderID, rec.Owner)
			}
		})
	}
}

// Finish, Confirm and Abandon whose writes landed but whose answers were lost report what
// happened, not the lost answer.
func TestWritesWithLostReplies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s, c := newStore()
	if _, _, err := s.Begin(ctx, claim("u1", "key", "h", "a"), ids()); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second)
	f.SetLostReply(daprstatetest.ErrReplyLost)

	until, confirmErr := s.Confirm(ctx, "u1", "key", "a", lease)
	finishErr := s.Finish(ctx, "u1", "key", "a", 201, []byte(`{"id":"o1"}`))

	if confirmErr != nil || !until.Equal(c.Now().Add(lease)) {
		t.Errorf("Confirm = %v, %v; want the lease extended to %v", until, confirmErr, c.Now().Add(lease))
	}
	if finishErr != nil {
		t.Errorf("Finish = %v, want nil (the reply is stored)", finishErr)
	}
	raw, _ := f.Value(component, idempotency.Key("u1", "key"))
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if !rec.Done || rec.Status != 201 {
		t.Errorf("stored record done %t status %d, want the reply stored", rec.Done, rec.Status)
	}
}

// Once finished, the reply stays: a Finish of a stale attempt does not replace it.
func TestFinishedRecordIsNeverOverwritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, s, c := newStore()
	if _, _, err := s.Begin(ctx, claim("u1", "key", "h", "a"), ids()); err != nil {
		t.Fatal(err)
	}
	c.Advance(lease)
	if _, _, err := s.Begin(ctx, claim("u1", "key", "h", "b"), ids()); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "u1", "key", "b", 201, []byte(`{"id":"o1"}`)); err != nil {
		t.Fatal(err)
	}

	err := s.Finish(ctx, "u1", "key", "a", 409, []byte(`{"code":"sold-out"}`))

	if !errors.Is(err, idempotency.ErrNotOwner) {
		t.Errorf("stale Finish error = %v, want %v", err, idempotency.ErrNotOwner)
	}
	rec, found, err := s.Get(ctx, "u1", "key")
	if err != nil || !found {
		t.Fatalf("Get = found %t, %v", found, err)
	}
	if rec.Status != 201 || string(rec.Body) != `{"id":"o1"}` || rec.Owner != "b" {
		t.Errorf("record = %d %s by %q, want b's 201 {\"id\":\"o1\"}", rec.Status, rec.Body, rec.Owner)
	}
}

// Another replica takes the key over between a stale owner's read and its write: the owner
// check runs inside the CAS, so the stale write fails on the re-read, whatever it was.
func TestOwnerCheckedInsideTheCAS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	takeover := func(_ string, cur []byte) []byte {
		var r record
		if err := json.Unmarshal(cur, &r); err != nil {
			panic(err)
		}
		r.Owner, r.LeaseUntil = "b", t0.Add(2*lease)
		out, _ := json.Marshal(r)
		return out
	}
	tests := []struct {
		name    string
		write   func(s *store) error
		wantErr error
	}{
		{"finish", func(s *store) error { return s.Finish(ctx, "u1", "key", "a", 409, []byte(`{}`)) }, idempotency.ErrNotOwner},
		{"confirm", func(s *store) error { _, err := s.Confirm(ctx, "u1", "key", "a", lease); return err }, idempotency.ErrNotOwner},
		{"abandon", func(s *store) error { return s.Abandon(ctx, "u1", "key", "a") }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, s, _ := newStore()
			if _, _, err := s.Begin(ctx, claim("u1", "key", "h", "a"), ids()); err != nil {
				t.Fatal(err)
			}
			f.Interfere("idem:", 1, takeover)

			err := tt.write(s)

			if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			rec, _, err := s.Get(ctx, "u1", "key")
			if err != nil {
				t.Fatal(err)
			}
			if rec.Owner != "b" || rec.Done || !rec.LeaseUntil.Equal(t0.Add(2*lease)) {
				t.Errorf("record = owner %q done %t lease until %v; want b's claim untouched", rec.Owner, rec.Done, rec.LeaseUntil)
			}
		})
	}
}

// Two first requests on two replicas: the one whose create loses sees the other's claim.
func TestBeginLosesToAnotherReplica(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, s, _ := newStore()
	f.Interfere("idem:", 1, func(string, []byte) []byte {
		out, _ := json.Marshal(record{Record: idempotency.Record{Hash: "h", Owner: "b", LeaseUntil: t0.Add(lease), CreatedAt: t0}, OrderID: "o9"})
		return out
	})

	rec, claimed, err := s.Begin(ctx, claim("u1", "key", "h", "a"), ids())

	if err != nil || claimed {
		t.Fatalf("Begin = claimed %t, %v; want the other replica's claim", claimed, err)
	}
	if rec.Owner != "b" || rec.OrderID != "o9" {
		t.Errorf("record = owner %q order %q, want b's o9", rec.Owner, rec.OrderID)
	}
}
