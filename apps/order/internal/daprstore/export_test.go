package daprstore

import "time"

// QueuedFor is how many registrations wait for the next write of the document holding
// orderID due at due.
func (p *Pending) QueuedFor(orderID string, due time.Time) int {
	start := p.windowOf(due)
	return p.batcher.Queued(pendingDocKey{key: winKey(start, p.shard(orderID)), window: start})
}

// LegacyKey is the shard document an earlier version kept orderID in.
func (p *Pending) LegacyKey(orderID string) string { return legacyKey(int(p.shard(orderID))) }
