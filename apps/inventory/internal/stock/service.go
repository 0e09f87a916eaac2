package stock

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/groupbuy/groupbuy/pkg/batch"
	"github.com/groupbuy/groupbuy/pkg/ids"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Errors of the stock domain.
var (
	ErrNotFound = problem.New(problem.CodeNotFound, "no stock record for this deal")
	ErrConflict = problem.New(problem.CodeConflict, "the deal's stock was already created with another quantity")
	// ErrBusy means a request could not be applied within FlushTimeout: its bucket stayed
	// contended (ETag conflicts) or its queue too long.
	ErrBusy = problem.New(problem.CodeUnavailable, "the deal's stock is too contended, retry")
	// ErrStale is what a Store returns when a write lost the race: the bucket's ETag changed
	// since it was read, or the bucket to create already exists. The CAS loop retries it.
	ErrStale = errors.New("stock: bucket changed since it was read")
)

// Store keeps the stock documents: one meta document per deal and one document per bucket.
// Buckets change only through UpdateBucket with the ETag they were read with.
type Store interface {
	// Meta returns the deal's meta document or ErrNotFound.
	Meta(ctx context.Context, dealID string) (Meta, error)
	// CreateMeta stores m unless the deal has one; then it returns that one, created=false.
	CreateMeta(ctx context.Context, m Meta) (existing Meta, created bool, err error)
	// Bucket returns bucket i of the deal and its ETag, or ErrNotFound.
	Bucket(ctx context.Context, dealID string, i int) (b Bucket, etag string, err error)
	// CreateBucket stores b if its key does not exist (ErrStale otherwise).
	CreateBucket(ctx context.Context, b Bucket) error
	// UpdateBucket replaces b if its ETag still equals etag (ErrStale otherwise).
	UpdateBucket(ctx context.Context, b Bucket, etag string) error
	// Page returns a page of a deal's bucket, or ErrNotFound.
	Page(ctx context.Context, dealID string, bucket int, key string) (Page, error)
	// CreatePage stores p if its key does not exist (ErrStale otherwise).
	CreatePage(ctx context.Context, p Page) error
	// DeletePage removes a page; a missing page is no error.
	DeletePage(ctx context.Context, dealID string, bucket int, key string) error
}

// Config tunes the service. Zero values take the defaults noted.
type Config struct {
	// Buckets is the bucket count of newly created deals (default 1, capped by the stock and
	// MaxBuckets). A deal keeps the count it was created with.
	Buckets int
	// SoldOutTTL is how long a replica trusts its own "sold out" observation of a deal and
	// refuses reservations without a state round trip. Releases on other replicas can make
	// stock available again meanwhile, so keep it short. Zero or negative disables the marker.
	SoldOutTTL time.Duration
	// DisableBatching makes every request run its own read-modify-CAS loop (no group
	// commit), for comparison in benchmarks.
	DisableBatching bool
	// MaxBatch caps the ops of one CAS (default 256).
	MaxBatch int
	// FlushTimeout bounds the life of a request in this replica (default 5s): one that is
	// not applied within it (queued, or its batch's CAS retried after ETag conflicts) fails
	// with ErrBusy and is never applied later, and no batch writes past the latest deadline
	// of its requests. This is what bounds how long a reserve can land after its caller gave
	// up, which release tombstones and passed marks must outlive (RecentWindow).
	FlushTimeout time.Duration
	// BackoffBase and BackoffCap shape the jittered exponential backoff after an ETag
	// conflict (defaults 2ms and 100ms).
	BackoffBase, BackoffCap time.Duration
	// RecentWindow is how long the records of finished ops (committed and released holds,
	// release tombstones, passed marks) stay in a bucket's recent-ops window after their
	// last change (default DefaultRecentWindow, at least twice FlushTimeout). A release
	// tombstone must outlive every reserve of its order in flight when it was written, and
	// a passed mark every attempt of its order walking at the time: such a reserve is applied
	// by its NotAfter, FlushTimeout after it arrived, and the write carrying it was sent
	// before its batch's context ended, at most another FlushTimeout; so positive values
	// below twice FlushTimeout are refused, and what the window has beyond that is margin
	// for the clock skew between replicas. Records are pruned only by a write the bucket gets
	// anyway.
	RecentWindow time.Duration
	// RecentOps caps the records of a bucket's window by count (default DefaultRecentOps):
	// the bucket's worst-case size. Records pushed out early make the reserves they could
	// have guarded fail safe (see Window), so keep it above a bucket's finished ops per
	// FlushTimeout at the expected peak.
	RecentOps int
	// PageOut is the most reserved holds a bucket keeps in its own document before they
	// move to a page (default 64; see Paging). PageMax caps the holds of a page (default 400,
	// at most 56 KB of JSON), PageFinishedCap the records of finished paged holds a bucket
	// keeps (default 64).
	PageOut, PageMax, PageFinishedCap int
	// PageGrace is how long an unlisted page stays stored for replicas that read the bucket
	// before it was unlisted (default twice FlushTimeout).
	PageGrace time.Duration
	// Meter records inventory_cas_conflicts_total and inventory_batch_size (default no-op).
	Meter metric.Meter
	// Clock tells the time (default time.Now).
	Clock func() time.Time
}

// Recent-ops window defaults (Config.RecentWindow, Config.RecentOps).
const (
	// DefaultRecentWindow leaves, over twice FlushTimeout's default 5s, 50s for clock skew.
	DefaultRecentWindow = time.Minute
	// DefaultRecentOps keeps a bucket's window to about 36 KB of JSON (at most 140 bytes a
	// record) and covers 50 finished ops a second per bucket for a full FlushTimeout.
	DefaultRecentOps = 256
)

func (c *Config) defaults() {
	c.Buckets = min(max(c.Buckets, 1), MaxBuckets)
	if c.RecentOps <= 0 {
		c.RecentOps = DefaultRecentOps
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.PageOut <= 0 {
		c.PageOut = 64
	}
	if c.PageMax <= 0 {
		c.PageMax = 400
	}
	if c.PageFinishedCap <= 0 {
		c.PageFinishedCap = 64
	}
	if c.FlushTimeout <= 0 {
		c.FlushTimeout = 5 * time.Second
	}
	if c.PageGrace <= 0 {
		c.PageGrace = 2 * c.FlushTimeout
	}
	if c.RecentWindow <= 0 {
		c.RecentWindow = max(DefaultRecentWindow, 2*c.FlushTimeout)
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 2 * time.Millisecond
	}
	if c.BackoffCap <= 0 {
		c.BackoffCap = 100 * time.Millisecond
	}
	if c.Meter == nil {
		c.Meter = noop.NewMeterProvider().Meter("inventory")
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Service implements the stock use cases.
type Service struct {
	store     Store
	cfg       Config
	now       func() time.Time
	batcher   *batch.Batcher[bucketKey, Op, Result]
	conflicts metric.Int64Counter
	batchSize metric.Int64Histogram

	mu    sync.Mutex
	metas map[string]Meta  // immutable once created, so cached for good
	memos map[string]*memo // per deal: what this replica last saw of each bucket
	pages map[bucketKey]*pageCache
	bg    sync.WaitGroup // deletions of unlisted pages (Close hurries and waits for them)
	stop  chan struct{}  // closed by Close
	once  sync.Once
}

// maxHolders bounds the order ids a replica remembers per deal as holding stock.
const maxHolders = 100_000

type bucketKey struct {
	deal   string
	bucket int
}

// memo is a replica's recent view of a deal's buckets, for the sold-out marker, and the
// orders it saw holding stock of the deal: their replays bypass the marker.
type memo struct {
	avail        []int
	seen         []time.Time
	soldOutUntil time.Time
	holders      map[string]struct{}
}

// NewService returns a service over store.
func NewService(store Store, cfg Config) (*Service, error) {
	cfg.defaults()
	if cfg.RecentWindow < 2*cfg.FlushTimeout {
		return nil, fmt.Errorf("stock: recent-ops window %s is below twice the flush timeout %s", cfg.RecentWindow, cfg.FlushTimeout)
	}
	s := &Service{store: store, cfg: cfg, now: cfg.Clock, metas: map[string]Meta{}, memos: map[string]*memo{},
		pages: map[bucketKey]*pageCache{}, stop: make(chan struct{})}
	var err error
	s.conflicts, err = cfg.Meter.Int64Counter("inventory_cas_conflicts_total",
		metric.WithDescription("ETag conflicts on stock bucket writes (another replica wrote first)"))
	if err != nil {
		return nil, fmt.Errorf("stock metrics: %w", err)
	}
	s.batchSize, err = cfg.Meter.Int64Histogram("inventory_batch_size",
		metric.WithDescription("Operations applied by one stock bucket CAS"),
		metric.WithExplicitBucketBoundaries(1, 2, 4, 8, 16, 32, 64, 128, 256))
	if err != nil {
		return nil, fmt.Errorf("stock metrics: %w", err)
	}
	s.conflicts.Add(context.Background(), 0) // exported from the start, not from the first conflict
	s.batcher = batch.New(s.flush, cfg.MaxBatch, cfg.FlushTimeout)
	return s, nil
}

// Close deletes the pages the service unlisted without waiting out their grace, and returns
// when that is done.
func (s *Service) Close() {
	s.once.Do(func() { close(s.stop) })
	s.bg.Wait()
}

// Create makes the stock of a deal with qty units, split evenly over the configured number of
// buckets. It is idempotent: calling it again with the same quantity returns the current
// levels; another quantity is ErrConflict.
func (s *Service) Create(ctx context.Context, dealID string, qty int) (Levels, error) {
	var fields []problem.FieldError
	fields = checkDealID(fields, dealID)
	if qty < 1 || qty > MaxStock {
		fields = append(fields, problem.FieldError{Field: "stock", Reason: fmt.Sprintf("must be between 1 and %d", MaxStock)})
	}
	if len(fields) > 0 {
		return Levels{}, problem.Invalid(fields...)
	}
	m := Meta{DealID: dealID, Stock: qty, Buckets: min(s.cfg.Buckets, qty), CreatedAt: s.now().UTC()}
	existing, created, err := s.store.CreateMeta(ctx, m)
	if err != nil {
		return Levels{}, err
	}
	if !created {
		if existing.Stock != qty {
			return Levels{}, ErrConflict
		}
		m = existing
	}
	// The meta document is written first and decides the split (first write wins), so racing
	// creators agree on every bucket. A bucket missing after a crash here reads as its initial
	// state everywhere and is written by the next Create or by its first CAS.
	for i := range m.BucketCount() {
		if err := s.store.CreateBucket(ctx, m.InitialBucket(i)); err != nil && !errors.Is(err, ErrStale) {
			return Levels{}, err
		}
	}
	s.mu.Lock()
	s.metas[dealID] = m
	s.mu.Unlock()
	if created {
		return Levels{DealID: dealID, Stock: qty, Available: qty}, nil
	}
	return s.Levels(ctx, dealID)
}

// Levels returns a deal's counters summed over its buckets.
func (s *Service) Levels(ctx context.Context, dealID string) (Levels, error) {
	m, err := s.meta(ctx, dealID)
	if err != nil {
		return Levels{}, err
	}
	l := Levels{DealID: dealID}
	for i := range m.BucketCount() {
		b, err := s.bucket(ctx, m, i)
		if err != nil {
			return Levels{}, err
		}
		s.observe(bucketKey{dealID, i}, b)
		l.add(b)
	}
	return l, nil
}

// Outcome is the business answer to a reservation.
type Outcome string

// Outcomes.
const (
	OutcomeReserved Outcome = "reserved"
	OutcomeSoldOut  Outcome = "sold_out"
)

// Reservation is the answer to Reserve: reserved with the order's hold state (reserved for a
// new hold; the current state for a replay), or sold out with no state.
type Reservation struct {
	Outcome Outcome
	State   HoldState
}

// Reserve holds qty units of a deal for an order until the given time. It is idempotent per
// order id: an order that already holds stock of the deal gets its hold back (in whatever
// state it is now), never a second hold.
//
// A hold lives in one bucket. The order tries its home bucket first; when that cannot cover
// qty, the other buckets are probed read-only, and only if one has room does the order walk
// its probe sequence marking each full bucket as passed before taking the first with room.
// The marks make the walk repeatable: a replay on any replica skips the same buckets and
// finds the same hold. Spent buckets (everything sold) get no mark: nothing can be held there
// again.
//
// Marks and the other records of finished ops live only in the buckets' bounded recent-ops
// window, so a bucket may have forgotten an order. A reserve that would take a hold where the
// bucket has no record of the order checks what the window dropped (Window):
//   - a record made since this request began (a release tombstone or a mark made while it
//     was in flight, pushed out by the window's cap): the answer is ErrBusy, and a retry
//     starts afresh;
//   - a record made since the order came to be (its id's time, for Snowflake ids of
//     multi-bucket deals): its mark may be gone while it holds further along, so every
//     bucket is looked at first; an order held anywhere gets that hold back, one still
//     walking (a mark, no hold) is ErrBusy, and one held nowhere walks again.
//
// A finished hold that left the window is forgotten: a reserve of its order then is a new
// placement. The order app reserves only for orders it has no document for, and its own
// records say how a finished order ended.
//
// When this replica saw every bucket of the deal empty within SoldOutTTL the answer is sold
// out without a state round trip, unless this replica has seen the order hold stock of the
// deal (then the replay reads its hold as usual). A replay on another replica than the one
// that reserved cannot be told apart from a new order there and is answered sold out: a
// caller that retried a Reserve whose first answer it lost and now gets sold out should
// Release the order, in case the lost attempt did reserve or still will (see Release). An
// order released before it held anything answers reserved with state released while its
// release tombstone lives: the placement is over.
func (s *Service) Reserve(ctx context.Context, dealID, orderID string, qty int, until time.Time) (Reservation, error) {
	res, err := s.reserve(ctx, dealID, orderID, qty, until)
	if err == nil && res.Outcome == OutcomeReserved {
		s.holder(dealID, orderID)
	}
	return res, err
}

func (s *Service) reserve(ctx context.Context, dealID, orderID string, qty int, until time.Time) (Reservation, error) {
	var fields []problem.FieldError
	fields = checkDealID(fields, dealID)
	fields = checkOrderID(fields, orderID)
	if qty < 1 || qty > MaxQuantity {
		fields = append(fields, problem.FieldError{Field: "quantity", Reason: fmt.Sprintf("must be between 1 and %d", MaxQuantity)})
	}
	if until.IsZero() {
		fields = append(fields, problem.FieldError{Field: "until", Reason: "is required"})
	}
	if len(fields) > 0 {
		return Reservation{}, problem.Invalid(fields...)
	}
	if s.soldOut(dealID, orderID) {
		return Reservation{Outcome: OutcomeSoldOut}, nil
	}
	m, err := s.meta(ctx, dealID)
	if err != nil {
		return Reservation{}, err
	}
	n := m.BucketCount()
	// Both times are moved back by the clock skew tolerated between the replicas (and the
	// order app) whose clocks stamp the records they are compared with.
	op := Op{Kind: OpReserve, OrderID: orderID, Qty: qty, Until: until.UTC(), Since: s.now().UTC().Add(-clockSkew)}
	if b := born(orderID); n > 1 && !b.IsZero() {
		// With one bucket there is no walk, so no mark to forget.
		op.Born = b.Add(-clockSkew)
	}
	r, err := s.walk(ctx, dealID, n, op)
	if err == nil && r.Status == Unsure {
		r, err = s.lookEverywhere(ctx, dealID, n, op)
		if err == nil && r.Status == 0 {
			op.Born = time.Time{} // held nowhere and walking nowhere: a walk is safe
			r, err = s.walk(ctx, dealID, n, op)
		}
	}
	switch {
	case err != nil:
		return Reservation{}, err
	case r.Status == Done:
		return Reservation{Outcome: OutcomeReserved, State: r.State}, nil
	case r.Status == Forgotten, r.Status == Unsure:
		return Reservation{}, fmt.Errorf("order %s of deal %s: a bucket forgot records made since the order began: %w", orderID, dealID, ErrBusy)
	}
	return Reservation{Outcome: OutcomeSoldOut}, nil
}

// walk runs op along the order's probe sequence: its home bucket, then, when that cannot
// cover the quantity, a read-only look at the others, and only if one has room the walk
// proper, marking full buckets until one holds the order. The answer is Done, Forgotten or
// Unsure from the bucket that gave it, or NoRoom: sold out.
func (s *Service) walk(ctx context.Context, dealID string, n int, op Op) (Result, error) {
	home := HomeBucket(op.OrderID, n)
	r, err := s.exec(ctx, dealID, home, op)
	if err != nil || (r.Status != NoRoom && r.Status != Next) {
		return r, err
	}
	if n == 1 {
		return Result{Status: NoRoom}, nil
	}
	// Home is full (NoRoom) or passed earlier (Next). Look before marking anything: marks are
	// writes, and a deal that is sold out everywhere should cost reads only.
	probe := Op{Kind: OpProbe, OrderID: op.OrderID, Qty: op.Qty}
	room := false
	for k := 1; k < n && !room; k++ {
		r, err := s.exec(ctx, dealID, (home+k)%n, probe)
		if err != nil || r.Status == Done {
			return r, err
		}
		room = r.Status == Room
	}
	if !room {
		return Result{Status: NoRoom}, nil
	}
	for k := range n {
		op.Mark = k < n-1 // the last bucket of the sequence needs no mark: nothing follows it
		r, err := s.exec(ctx, dealID, (home+k)%n, op)
		if err != nil || (r.Status != Next && r.Status != NoRoom) {
			return r, err
		}
		if r.Status == NoRoom {
			break
		}
	}
	return Result{Status: NoRoom}, nil
}

// lookEverywhere reads every bucket of the deal for the order: its hold (Done, in whatever
// state the window still shows), or a mark with no hold anywhere, which means an attempt is
// walking now (ErrBusy); zero when no bucket knows the order. Reserved holds never leave a
// bucket, so an order held nowhere has no reservation to double.
func (s *Service) lookEverywhere(ctx context.Context, dealID string, n int, op Op) (Result, error) {
	probe := Op{Kind: OpProbe, OrderID: op.OrderID, Qty: op.Qty}
	walking := false
	for i := range n {
		r, err := s.exec(ctx, dealID, i, probe)
		if err != nil || r.Status == Done {
			return r, err
		}
		walking = walking || r.Status == Next
	}
	if walking {
		return Result{}, fmt.Errorf("order %s of deal %s: another attempt is placing it: %w", op.OrderID, dealID, ErrBusy)
	}
	return Result{}, nil
}

// clockSkew is how far apart the clocks of inventory's replicas and the order app may be for
// the window's checks (Op.Since, Op.Born) to hold: hosts kept in sync by NTP are milliseconds
// apart.
const clockSkew = time.Second

// born is the time an order id was made, for Snowflake ids (pkg/ids, the order app's); zero
// for any other id, whose reserves then rely on Op.Since alone.
func born(orderID string) time.Time {
	id, err := strconv.ParseInt(orderID, 10, 64)
	if err != nil || id <= 0 {
		return time.Time{}
	}
	t := ids.Time(id)
	if !t.After(ids.Epoch) {
		return time.Time{}
	}
	return t
}

// Commit turns the order's reserved hold into sold units. Committing a committed hold is a
// no-op; a released hold is ErrHoldReleased, no hold ErrHoldNotFound.
func (s *Service) Commit(ctx context.Context, dealID, orderID string) (HoldState, error) {
	r, err := s.find(ctx, dealID, orderID, Op{Kind: OpCommit})
	if err != nil {
		return "", err
	}
	if r.Status == Absent {
		return "", fmt.Errorf("order %s of deal %s: %w", orderID, dealID, ErrHoldNotFound)
	}
	return r.State, r.Err
}

// Release returns the order's reserved units to the deal. Releasing a released hold is a
// no-op and an order without a hold answers StateAbsent; a committed hold is
// ErrHoldCommitted.
//
// An order without a hold may still have a Reserve in flight on another replica: its
// caller gave up (a timeout), its retry was answered sold out elsewhere, and this release
// is the caller undoing it. So the release leaves a release tombstone in the first bucket of
// the order's probe sequence that is neither passed by the order nor spent, which is where
// that reserve takes its hold if it ever does (it passes or cannot use the buckets before).
// The tombstone's write moves the bucket's ETag, so the in-flight batch re-applies on a
// fresh read and finds the order released; one that reads later finds it too. The
// tombstone stays in the recent-ops window RecentWindow, which outlasts every such reserve
// (FlushTimeout); one pushed out early by the window's cap makes such a reserve answer
// ErrBusy instead (Window).
func (s *Service) Release(ctx context.Context, dealID, orderID string) (HoldState, error) {
	r, err := s.find(ctx, dealID, orderID, Op{Kind: OpRelease, Tombstone: true})
	if err != nil {
		return "", err
	}
	if r.Status == Absent {
		return StateAbsent, nil
	}
	return r.State, r.Err
}

// find applies a commit or release along the order's probe sequence until a bucket holds the
// order. Passed buckets send it on; a bucket without the order does not end the search,
// because its mark may have been pruned (Apply) while the hold further on lives. An order
// found nowhere costs one op per bucket, and with op.Tombstone one write: the tombstone in
// the first bucket that answers Absent.
func (s *Service) find(ctx context.Context, dealID, orderID string, op Op) (Result, error) {
	var fields []problem.FieldError
	fields = checkDealID(fields, dealID)
	fields = checkOrderID(fields, orderID)
	if len(fields) > 0 {
		return Result{}, problem.Invalid(fields...)
	}
	m, err := s.meta(ctx, dealID)
	if err != nil {
		return Result{}, err
	}
	n := m.BucketCount()
	home := HomeBucket(orderID, n)
	op.OrderID = orderID
	for k := range n {
		r, err := s.exec(ctx, dealID, (home+k)%n, op)
		if err != nil || (r.Status != Next && r.Status != Absent) {
			return r, err
		}
		if r.Status == Absent {
			// With op.Tombstone, a tombstone stands here now (Apply wrote it unless one did
			// already): the buckets further on need none, only the search goes on.
			op.Tombstone = false
		}
	}
	return Result{Status: Absent}, nil
}

// exec runs op against one bucket: queued into the bucket's next batch, or on its own when
// batching is off. Failures of the whole batch come back as the error. The op gets its
// deadline here (FlushTimeout from now): the batcher ends its wait and its batch's writes
// by then, and Apply refuses it afterwards, so it never lands later than that.
func (s *Service) exec(ctx context.Context, dealID string, i int, op Op) (Result, error) {
	key := bucketKey{dealID, i}
	op.NotAfter = s.now().Add(s.cfg.FlushTimeout)
	var r Result
	if s.cfg.DisableBatching {
		fctx, cancel := context.WithTimeout(ctx, s.cfg.FlushTimeout)
		r = s.flush(fctx, key, []Op{op})[0]
		cancel()
	} else {
		var err error
		r, err = s.batcher.Do(ctx, key, op)
		switch {
		case errors.Is(err, batch.ErrTimeout):
			return Result{}, fmt.Errorf("stock %s/%d: %w: %w", dealID, i, err, ErrBusy)
		case err != nil:
			return Result{}, fmt.Errorf("stock %s/%d: %w", dealID, i, err)
		}
	}
	if r.Status == 0 {
		return Result{}, r.Err
	}
	return r, nil
}

// flush is one batch for one bucket: read the bucket, apply every op in order, write it back
// with the ETag it was read with. On an ETag conflict (another replica wrote the bucket) the
// whole batch is re-applied to a fresh read after a jittered exponential backoff, until the
// flush's context ends (the latest deadline of its ops) or every op is past its deadline.
func (s *Service) flush(ctx context.Context, key bucketKey, ops []Op) []Result {
	s.batchSize.Record(ctx, int64(len(ops)))
	m, err := s.meta(ctx, key.deal)
	if err != nil {
		return failAll(len(ops), err)
	}
	for attempt := 0; ; attempt++ {
		b, etag, err := s.store.Bucket(ctx, key.deal, key.bucket)
		missing := errors.Is(err, ErrNotFound)
		switch {
		case missing:
			b = m.InitialBucket(key.bucket)
		case err != nil:
			return failAll(len(ops), err)
		}
		results, err := s.write(ctx, key, ops, b, etag, missing)
		switch {
		case err == nil:
			return results
		case !errors.Is(err, ErrStale):
			return failAll(len(ops), err)
		}
		s.conflicts.Add(ctx, 1)
		if err := sleep(ctx, s.backoff(attempt)); err != nil {
			return failAll(len(ops), fmt.Errorf("stock %s/%d after %d etag conflicts: %w", key.deal, key.bucket, attempt+1, ErrBusy))
		}
	}
}

// write applies ops to b, read with etag (or missing: the bucket as created), and writes it
// back with the pages it makes. ErrStale means b changed since it was read: its CAS lost, or
// it lists a page another replica's write unlisted and deleted since.
func (s *Service) write(ctx context.Context, key bucketKey, ops []Op, b Bucket, etag string, missing bool) ([]Result, error) {
	pc := s.pageCache(key)
	pc.mu.Lock()
	defer pc.mu.Unlock()
	err := pc.sync(ctx, s.store, key, b.Pages)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %w", ErrStale, err)
	}
	if err != nil {
		return nil, err
	}
	pg := &Paging{Out: s.cfg.PageOut, Max: s.cfg.PageMax, FinishedCap: s.cfg.PageFinishedCap,
		Holds: pc.holds, Find: pc.find, NewKey: newPageKey}
	results, changed, ch := ApplyPaged(&b, ops, s.now().UTC(), Window{Age: s.cfg.RecentWindow, Ops: s.cfg.RecentOps}, pg)
	if !changed {
		s.observe(key, b)
		return results, nil
	}
	err = s.createPages(ctx, ch.Create)
	if err == nil && missing {
		err = s.store.CreateBucket(ctx, b)
	} else if err == nil {
		err = s.store.UpdateBucket(ctx, b, etag)
	}
	if errors.Is(err, ErrStale) {
		// The bucket does not list the pages made for this attempt: they go. After any other
		// failure the write may have landed, listing them, so they stay.
		s.deletePages(ctx, key, pageKeys(ch.Create))
	}
	if err != nil {
		return nil, err
	}
	s.observe(key, b)
	pc.written(ch)
	if len(ch.Drop) > 0 {
		// Later and off the batch's path: a replica that read the bucket before this write
		// still loads the pages it listed (its CAS then loses and it reads again). Deleted at
		// once, the page a page-out tops up could vanish under every slower reader in turn.
		s.bg.Go(func() {
			t := time.NewTimer(s.cfg.PageGrace)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.stop:
			}
			s.deletePages(ctx, key, ch.Drop)
		})
	}
	return results, nil
}

func failAll(n int, err error) []Result {
	rs := make([]Result, n)
	for i := range rs {
		rs[i].Err = err
	}
	return rs
}

// backoff is the wait after the attempt-th conflict: exponential from BackoffBase, capped at
// BackoffCap, with the upper half jittered so replicas that collided spread out.
func (s *Service) backoff(attempt int) time.Duration {
	d := s.cfg.BackoffCap
	if attempt < 16 {
		d = min(s.cfg.BackoffBase<<attempt, s.cfg.BackoffCap)
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// meta returns the deal's meta document, cached after the first read: it never changes.
func (s *Service) meta(ctx context.Context, dealID string) (Meta, error) {
	s.mu.Lock()
	m, ok := s.metas[dealID]
	s.mu.Unlock()
	if ok {
		return m, nil
	}
	m, err := s.store.Meta(ctx, dealID)
	if errors.Is(err, ErrNotFound) {
		return Meta{}, fmt.Errorf("deal %s: %w", dealID, ErrNotFound)
	}
	if err != nil {
		return Meta{}, err
	}
	s.mu.Lock()
	s.metas[dealID] = m
	s.mu.Unlock()
	return m, nil
}

func (s *Service) bucket(ctx context.Context, m Meta, i int) (Bucket, error) {
	b, _, err := s.store.Bucket(ctx, m.DealID, i)
	if errors.Is(err, ErrNotFound) {
		return m.InitialBucket(i), nil
	}
	return b, err
}

// observe records what a read or write showed of a bucket and keeps the sold-out marker:
// set when every bucket of the deal was seen empty within SoldOutTTL, cleared as soon as any
// bucket is seen with stock (a local release clears it at once this way).
func (s *Service) observe(key bucketKey, b Bucket) {
	if s.cfg.SoldOutTTL <= 0 {
		return
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	mm := s.memoLocked(key.deal)
	if key.bucket >= len(mm.avail) {
		return
	}
	mm.avail[key.bucket], mm.seen[key.bucket] = b.Available, now
	if b.Available > 0 {
		mm.soldOutUntil = time.Time{}
		return
	}
	for i, a := range mm.avail {
		if a != 0 || now.Sub(mm.seen[i]) >= s.cfg.SoldOutTTL {
			return
		}
	}
	mm.soldOutUntil = now.Add(s.cfg.SoldOutTTL)
}

// soldOut tells whether the marker refuses orderID without a round trip.
func (s *Service) soldOut(dealID, orderID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	mm := s.memos[dealID]
	if mm == nil || !s.now().Before(mm.soldOutUntil) {
		return false
	}
	_, held := mm.holders[orderID]
	return !held
}

// holder remembers that orderID holds stock of the deal (in any state), up to maxHolders
// orders per deal.
func (s *Service) holder(dealID, orderID string) {
	if s.cfg.SoldOutTTL <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mm := s.memoLocked(dealID)
	if mm.holders == nil {
		mm.holders = map[string]struct{}{}
	}
	if len(mm.holders) < maxHolders {
		mm.holders[orderID] = struct{}{}
	}
}

func (s *Service) memoLocked(dealID string) *memo {
	mm := s.memos[dealID]
	if mm == nil {
		n := s.metas[dealID].BucketCount()
		mm = &memo{avail: make([]int, n), seen: make([]time.Time, n)}
		s.memos[dealID] = mm
	}
	return mm
}

func checkDealID(fields []problem.FieldError, id string) []problem.FieldError {
	switch {
	case id == "":
		return append(fields, problem.FieldError{Field: "deal_id", Reason: "is required"})
	case strings.Contains(id, ":"):
		// "stock:<deal>:<i>" must never be read as another deal's meta key.
		return append(fields, problem.FieldError{Field: "deal_id", Reason: "must not contain ':'"})
	}
	return fields
}

func checkOrderID(fields []problem.FieldError, id string) []problem.FieldError {
	if id == "" {
		return append(fields, problem.FieldError{Field: "order_id", Reason: "is required"})
	}
	return fields
}
