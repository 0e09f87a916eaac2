package main

// The platform's key layout in Redis, as the invariant checks read it. Every reader of an
// app's documents lives in this file: the apps change their documents (bounded buckets,
// settled orders, merged idempotency records), and when one does, this is the file to update.
//
// Dapr's redis state store keeps a state key as a hash "<app-id>||<key>" holding the JSON
// value in field "data" and the ETag in field "version"; actor state is
// "<app-id>||<actor type>||<actor id>||<key>". The checks never ask the apps: they read the
// stores, so an app cannot vouch for itself.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// stateKey is the Redis key of an app's state key.
func stateKey(app, key string) string { return app + "||" + key }

// readState decodes the document an app stored under key; found is false when it is absent.
func readState(ctx context.Context, rdb *redis.Client, app, key string, v any) (bool, error) {
	data, err := rdb.HGet(ctx, stateKey(app, key), "data").Bytes()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(data, v)
}

// readStates reads many documents of one app in pipelined batches; absent keys are left out.
func readStates[T any](ctx context.Context, rdb *redis.Client, app string, keys []string) (map[string]T, error) {
	out := make(map[string]T, len(keys))
	for start := 0; start < len(keys); start += 500 {
		batch := keys[start:min(start+500, len(keys))]
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(batch))
		for i, k := range batch {
			cmds[i] = pipe.HGet(ctx, stateKey(app, k), "data")
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		for i, cmd := range cmds {
			data, err := cmd.Bytes()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return nil, err
			}
			var v T
			if err := json.Unmarshal(data, &v); err != nil {
				return nil, fmt.Errorf("%s %s: %w", app, batch[i], err)
			}
			out[batch[i]] = v
		}
	}
	return out, nil
}

// --- inventory: "stock:<deal>" (meta) and "stock:<deal>:<i>" (buckets) ---

type stockMeta struct {
	Stock   int `json:"stock"`
	Buckets int `json:"buckets"`
}

// stockBucket reads only what the checks need; holds are optional (a bucket may keep only the
// in-flight ones, or none).
type stockBucket struct {
	Stock     int                  `json:"stock"`
	Available int                  `json:"available"`
	Reserved  int                  `json:"reserved"`
	Sold      int                  `json:"sold"`
	Holds     map[string]stockHold `json:"holds"`
	// Pages lists the pages of reserved holds moved out of the bucket, at
	// "stock:<deal>:<i>:<key>"; a hold's record in the bucket naming its page overrides it.
	Pages []struct {
		Key string `json:"k"`
	} `json:"pages"`
}

type stockHold struct {
	Qty   int    `json:"qty"`
	State string `json:"state"`
	Page  string `json:"page"`
}

type stockPage struct {
	Holds map[string]stockHold `json:"holds"`
}

// pageKeys are the state keys of the pages bucket i of a deal lists.
func (b stockBucket) pageKeys(dealID string, i int) []string {
	keys := make([]string, len(b.Pages))
	for k, r := range b.Pages {
		keys[k] = fmt.Sprintf("stock:%s:%d:%s", dealID, i, r.Key)
	}
	return keys
}

// StockLevels are a deal's counters summed over its buckets.
type StockLevels struct {
	Stock, Available, Reserved, Sold int
	Buckets                          int
	// ReservedHolds counts the holds in state "reserved" (units in ReservedHoldUnits), when
	// the buckets list holds; HoldsListed is false when no bucket has a holds map.
	ReservedHolds, ReservedHoldUnits int
	HoldsListed                      bool
}

// readStock reads a deal's stock documents and checks each bucket's counters: none negative,
// available+reserved+sold == stock, and the buckets summing to the meta document's stock.
func readStock(ctx context.Context, rdb *redis.Client, dealID string) (StockLevels, error) {
	var meta stockMeta
	found, err := readState(ctx, rdb, "inventory", "stock:"+dealID, &meta)
	if err != nil {
		return StockLevels{}, err
	}
	if !found {
		return StockLevels{}, fmt.Errorf("deal %s has no stock meta document", dealID)
	}
	n := max(meta.Buckets, 1)
	keys := make([]string, n)
	for i := range n {
		keys[i] = fmt.Sprintf("stock:%s:%d", dealID, i)
	}
	buckets, err := readStates[stockBucket](ctx, rdb, "inventory", keys)
	if err != nil {
		return StockLevels{}, err
	}
	l := StockLevels{Buckets: n}
	for i, k := range keys {
		b, ok := buckets[k]
		if !ok {
			// A bucket never written is still its initial share, all available.
			share := meta.Stock / n
			if i < meta.Stock%n {
				share++
			}
			b = stockBucket{Stock: share, Available: share}
		}
		if b.Available < 0 || b.Reserved < 0 || b.Sold < 0 || b.Available+b.Reserved+b.Sold != b.Stock {
			return l, fmt.Errorf("deal %s bucket %d breaks available+reserved+sold == stock, none negative: %+v",
				dealID, i, struct{ Stock, Available, Reserved, Sold int }{b.Stock, b.Available, b.Reserved, b.Sold})
		}
		l.Stock += b.Stock
		l.Available += b.Available
		l.Reserved += b.Reserved
		l.Sold += b.Sold
		if b.Holds != nil {
			l.HoldsListed = true
		}
		for _, h := range b.Holds {
			if h.State == "reserved" {
				l.ReservedHolds++
				l.ReservedHoldUnits += h.Qty
			}
		}
		pages, err := readStates[stockPage](ctx, rdb, "inventory", b.pageKeys(dealID, i))
		if err != nil {
			return l, err
		}
		for k, r := range b.Pages {
			p, ok := pages[b.pageKeys(dealID, i)[k]]
			if !ok {
				return l, fmt.Errorf("deal %s bucket %d lists page %s, which is not stored", dealID, i, r.Key)
			}
			for id, h := range p.Holds {
				if rec, ok := b.Holds[id]; !ok || rec.Page != r.Key {
					l.ReservedHolds++
					l.ReservedHoldUnits += h.Qty
				}
			}
		}
	}
	if l.Stock != meta.Stock {
		return l, fmt.Errorf("deal %s: buckets hold %d units, the meta document says %d", dealID, l.Stock, meta.Stock)
	}
	return l, nil
}

// stockDocSize is the size of a deal's largest stock document (meta, bucket or page).
func stockDocSize(ctx context.Context, rdb *redis.Client, dealID string) (int64, error) {
	var meta stockMeta
	if _, err := readState(ctx, rdb, "inventory", "stock:"+dealID, &meta); err != nil {
		return 0, err
	}
	largest, err := rdb.HStrLen(ctx, stateKey("inventory", "stock:"+dealID), "data").Result()
	if err != nil {
		return 0, err
	}
	for i := range max(meta.Buckets, 1) {
		key := fmt.Sprintf("stock:%s:%d", dealID, i)
		n, err := rdb.HStrLen(ctx, stateKey("inventory", key), "data").Result()
		if err != nil {
			return 0, err
		}
		largest = max(largest, n)
		var b stockBucket
		if _, err := readState(ctx, rdb, "inventory", key, &b); err != nil {
			return 0, err
		}
		for _, pk := range b.pageKeys(dealID, i) {
			n, err := rdb.HStrLen(ctx, stateKey("inventory", pk), "data").Result()
			if err != nil {
				return 0, err
			}
			largest = max(largest, n)
		}
	}
	return largest, nil
}

// --- catalog: "product:<id>", "deal:<id>" ---

// catalogIDs returns the id of every product and deal the catalog has stored.
func catalogIDs(ctx context.Context, rdb *redis.Client) (map[string]bool, error) {
	out := map[string]bool{}
	for _, pf := range []string{"product:", "deal:"} {
		prefix := stateKey("catalog", pf)
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			out[strings.TrimPrefix(iter.Val(), prefix)] = true
		}
		if err := iter.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// --- order: "order:<id>" ---

// storedOrder is an order document as the order app stores it.
type storedOrder struct {
	ID        string    `json:"id"`
	UserID    string    `json:"user_id"`
	DealID    string    `json:"deal_id"`
	GroupID   string    `json:"group_id"`
	Quantity  int       `json:"quantity"`
	Status    string    `json:"status"`
	PayBy     time.Time `json:"pay_by"`
	UpdatedAt time.Time `json:"updated_at"`
}

func orderKey(id string) string { return "order:" + id }

// readOrders reads order documents by id; ids without a document are absent from the map.
func readOrders(ctx context.Context, rdb *redis.Client, ids []string) (map[string]storedOrder, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = orderKey(id)
	}
	byKey, err := readStates[storedOrder](ctx, rdb, "order", keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]storedOrder, len(byKey))
	for k, o := range byKey {
		out[strings.TrimPrefix(k, "order:")] = o
	}
	return out, nil
}

// --- group: GroupActor's state, the group app's own ETag-checked key "group:<group>" ---

type storedGroup struct {
	ID        string     `json:"id"`
	DealID    string     `json:"deal_id"`
	Status    string     `json:"status"`
	GroupSize int        `json:"group_size"`
	ExpiresAt time.Time  `json:"expires_at"`
	ClosedAt  *time.Time `json:"closed_at"`
	// DeadlineFiredAt is when the deadline reminder was first handled.
	DeadlineFiredAt *time.Time `json:"deadline_fired_at"`
	Seats           []struct {
		UserID  string `json:"user_id"`
		OrderID string `json:"order_id"`
		State   string `json:"state"`
		Paid    bool   `json:"paid"`
	} `json:"seats"`
}

func groupKey(id string) string { return "group:" + id }

// readGroups reads the groups' states by group id.
func readGroups(ctx context.Context, rdb *redis.Client, ids []string) (map[string]storedGroup, error) {
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = groupKey(id)
	}
	byKey, err := readStates[storedGroup](ctx, rdb, "group", keys)
	if err != nil {
		return nil, err
	}
	out := make(map[string]storedGroup, len(byKey))
	for _, g := range byKey {
		out[g.ID] = g
	}
	return out, nil
}

// --- notify: "inbox:<user>", items with id "<order>:<type>" ---

func inboxKey(userID string) string { return "inbox:" + userID }

// notificationID is the inbox id of an order event.
func notificationID(orderID, eventType string) string { return orderID + ":" + eventType }

// inboxVersions returns the ETag ("version" field) of each user's inbox, "" when absent: a
// cheap poll that tells which inboxes changed since the last look.
func inboxVersions(ctx context.Context, rdb *redis.Client, users []string) (map[string]string, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(users))
	for i, u := range users {
		cmds[i] = pipe.HGet(ctx, stateKey("notify", inboxKey(u)), "version")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make(map[string]string, len(users))
	for i, cmd := range cmds {
		v, err := cmd.Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, err
		}
		out[users[i]] = v
	}
	return out, nil
}

// inboxIDs returns the notification ids in a user's inbox.
func inboxIDs(ctx context.Context, rdb *redis.Client, userID string) (map[string]bool, error) {
	var in struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if _, err := readState(ctx, rdb, "notify", inboxKey(userID), &in); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(in.Items))
	for _, it := range in.Items {
		out[it.ID] = true
	}
	return out, nil
}

// keyFamily names the family of a Redis key for the size report: the app prefix, then the
// first segment of the state key with every further ":"-segment (ids, shards, hashes) as "*";
// actor state keeps its type and key with the actor id as "*". So "inventory||stock:42:0" is
// "inventory||stock:*:*" and "inventory||stock:42" is "inventory||stock:*".
func keyFamily(key string) string {
	parts := strings.Split(key, "||")
	if len(parts) == 4 { // app||type||id||key
		return parts[0] + "||" + parts[1] + "||*||" + parts[3]
	}
	last := parts[len(parts)-1]
	segs := strings.Split(last, ":")
	keep := 1
	if len(parts) == 1 {
		keep = 2 // not a Dapr key: "<prefix>:<kind>:..." (the baseline's, the rate limiter's)
	}
	for i := keep; i < len(segs); i++ {
		segs[i] = "*"
	}
	parts[len(parts)-1] = strings.Join(segs, ":")
	return strings.Join(parts, "||")
}
