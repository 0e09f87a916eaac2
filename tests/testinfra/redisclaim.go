package testinfra

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis DB claims. A run owns DB n while key lockKeyPrefix+n in DB 0 holds its run id. The key
// is set with NX and a TTL that a goroutine keeps refreshing, so a crashed run's claim lapses
// after one TTL. Data a crashed run leaves behind is harmless: every claimer flushes the DB
// before use.

const (
	lockKeyPrefix = "groupbuy:testinfra:db:"
	firstClaimDB  = 1
	lastClaimDB   = 15
)

// refreshScript extends the claim only while it is still ours.
var refreshScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0`)

// releaseScript deletes the claim only while it is still ours.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// errClaimLost means another process holds the lock key of a DB this run had claimed; the run
// then neither flushes nor releases that DB, since the data there may be the other run's.
var errClaimLost = errors.New("redis db claim lost")

type dbClaim struct {
	lock  *redis.Client // DB 0, where the lock keys live
	data  *redis.Client // the claimed DB
	db    int
	key   string
	runID string
	ttl   time.Duration

	stopRefresh context.CancelFunc
	refreshDone chan struct{}
	lost        chan struct{} // closed by the refresher when the claim turns out to be gone
}

func redisOptions(addr string, db int) *redis.Options {
	return &redis.Options{
		Addr:            addr,
		DB:              db,
		DialTimeout:     3 * time.Second,
		DisableIdentity: true, // no CLIENT SETINFO noise in the shared server's client list
		MaxRetries:      1,
	}
}

// claimRedisDB claims the lowest free DB in 1..15, flushes it and starts refreshing the claim.
func claimRedisDB(ctx context.Context, addr, runID string, ttl time.Duration, logf func(string, ...any)) (*dbClaim, error) {
	lock := redis.NewClient(redisOptions(addr, 0))
	if err := lock.Ping(ctx).Err(); err != nil {
		_ = lock.Close()
		return nil, fmt.Errorf("redis at %s does not answer (start it, or point %s at one): %w", addr, EnvRedisAddr, err)
	}
	for db := firstClaimDB; db <= lastClaimDB; db++ {
		key := lockKeyPrefix + strconv.Itoa(db)
		ok, err := lock.SetNX(ctx, key, runID, ttl).Result()
		if err != nil {
			_ = lock.Close()
			return nil, fmt.Errorf("claim redis db %d: %w", db, err)
		}
		if !ok {
			continue
		}
		c := &dbClaim{lock: lock, data: redis.NewClient(redisOptions(addr, db)), db: db, key: key, runID: runID, ttl: ttl}
		if err := c.data.FlushDB(ctx).Err(); err != nil {
			_ = c.releaseLock(context.WithoutCancel(ctx))
			_ = c.data.Close()
			_ = lock.Close()
			return nil, fmt.Errorf("flush claimed redis db %d (the server needs `databases 16`): %w", db, err)
		}
		c.startRefresh(logf)
		return c, nil
	}
	_ = lock.Close()
	return nil, fmt.Errorf("all redis dbs %d..%d at %s are claimed by other runs; see `redis-cli -h <host> -p <port> --scan --pattern '%s*'` (claims of crashed runs expire within their TTL)",
		firstClaimDB, lastClaimDB, addr, lockKeyPrefix)
}

func (c *dbClaim) startRefresh(logf func(string, ...any)) {
	ctx, cancel := context.WithCancel(context.Background())
	c.stopRefresh = cancel
	c.refreshDone = make(chan struct{})
	c.lost = make(chan struct{})
	go func() {
		defer close(c.refreshDone)
		t := time.NewTicker(c.ttl / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			n, err := refreshScript.Run(ctx, c.lock, []string{c.key}, c.runID, c.ttl.Milliseconds()).Int()
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				// Transient: two more ticks remain before the claim lapses.
				logf("testinfra: refresh redis db %d claim: %v", c.db, err)
			case n == 0:
				close(c.lost)
				return
			}
		}
	}()
}

// release flushes the DB and deletes the claim, both only while the claim is still ours.
func (c *dbClaim) release(ctx context.Context) error {
	c.stopRefresh()
	<-c.refreshDone
	defer c.lock.Close()
	defer c.data.Close()

	select {
	case <-c.lost:
		return fmt.Errorf("db %d: %w during the run (was the process stalled for longer than the %s TTL?); not flushed", c.db, errClaimLost, c.ttl)
	default:
	}
	// Re-arm the full TTL first: the flush below then cannot outlive our ownership.
	n, err := refreshScript.Run(ctx, c.lock, []string{c.key}, c.runID, c.ttl.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("db %d: check claim: %w", c.db, err)
	}
	if n == 0 {
		return fmt.Errorf("db %d: %w before close; not flushed", c.db, errClaimLost)
	}
	if err := c.data.FlushDB(ctx).Err(); err != nil {
		return fmt.Errorf("flush db %d: %w", c.db, err)
	}
	return c.releaseLock(ctx)
}

func (c *dbClaim) releaseLock(ctx context.Context) error {
	if err := releaseScript.Run(ctx, c.lock, []string{c.key}, c.runID).Err(); err != nil {
		return fmt.Errorf("release db %d claim: %w", c.db, err)
	}
	return nil
}
