// Package daprstore keeps the group app's own documents in the Dapr state store (plain state
// API, keys prefixed with the app id by the sidecar):
//
//	group:<group>              a group's state, written only in GroupActor turns, with the
//	                           ETag the turn read (Groups)
//	idem:<user>:<sha256(key)>  Idempotency-Key records of open and join, expiring after 24 h
//	                           (pkg/idempotency)
//	dealgroups:<deal>:<shard>  the groups of a deal whose id hashes to shard (FNV-32a of the
//	                           id mod GROUP_INDEX_SHARDS), for GET /deals/{id}/groups (Index)
//	dealgroups:<deal>          legacy: all of a deal's groups, as earlier versions kept them;
//	                           still listed and removed from, never added to
//
// An index entry is 74 bytes of JSON with its comma (an 18-digit id from pkg/ids and a UTC
// deadline with milliseconds, measured with encoding/json; 75 with a 19-digit id). A shard
// grows only by a write, and every write drops the entries whose deadline is more than
// GROUP_LIST_RETENTION plus GROUP_INDEX_PRUNE_MARGIN ago: a shard holds at most its share of
// the deal's groups opened within a group's lifetime plus those two before its last write.
// 10,000 groups open at once on one deal over 16 shards take 46 KB per shard on average and
// 48-49 KB in the fullest (TestIndexShardSize), where the single document of earlier
// versions held all 740 KB.
package daprstore

import (
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
	"github.com/groupbuy/groupbuy/pkg/idempotency"
)

const casAttempts = 50

// NewIdempotency returns the Idempotency-Key store (group.Idempotency); records expire after
// ttl. A group.IdemRecord is stored as one flat document, the group and order ids next to the
// shared fields.
func NewIdempotency(s *daprstate.Store, ttl time.Duration) *idempotency.Store[group.IdemRecord, *group.IdemRecord] {
	return idempotency.New[group.IdemRecord](s, ttl, time.Now)
}
