package soldout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisPlaced keeps Placed in Redis (the rate limiter's), one key per pair, shared by every
// gateway replica. A key must outlive the order app's idempotency record of the pair
// (IDEMPOTENCY_TTL there, counted from the record's last write, which lands within a lease of
// the forward): a mark gone before the record would let the edge shadow a stored answer. The
// Redis must therefore keep keys (no eviction policy that drops them, persistence if it
// restarts).
type RedisPlaced struct {
	rdb    redis.Cmdable
	prefix string
	ttl    time.Duration
}

// NewRedisPlaced returns the Redis store; keys are prefix+"placed:<user>:<hash of the key>".
func NewRedisPlaced(rdb redis.Cmdable, prefix string, ttl time.Duration) *RedisPlaced {
	return &RedisPlaced{rdb: rdb, prefix: prefix, ttl: ttl}
}

// redisKey hashes the Idempotency-Key, so its length and content stay out of Redis' key space.
func (p *RedisPlaced) redisKey(userID, key string) string {
	sum := sha256.Sum256([]byte(key))
	return p.prefix + "placed:" + userID + ":" + hex.EncodeToString(sum[:16])
}

// Mark implements Placed.
func (p *RedisPlaced) Mark(ctx context.Context, userID, key string) error {
	if err := p.rdb.Set(ctx, p.redisKey(userID, key), 1, p.ttl).Err(); err != nil {
		return fmt.Errorf("mark placed key: %w", err)
	}
	return nil
}

// Seen implements Placed.
func (p *RedisPlaced) Seen(ctx context.Context, userID, key string) (bool, error) {
	n, err := p.rdb.Exists(ctx, p.redisKey(userID, key)).Result()
	if err != nil {
		return false, fmt.Errorf("look up placed key: %w", err)
	}
	return n > 0, nil
}
