package daprstore

// Queued is how many operations wait for the next write of the shard document holding
// groupID.
func (x *Index) Queued(dealID, groupID string) int {
	return x.batcher.Queued(shardKey(dealID, x.shard(groupID)))
}
