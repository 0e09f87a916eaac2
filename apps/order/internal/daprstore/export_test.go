package daprstore

import "time"

// SetClock replaces the clock of an Idempotency store, so tests can pass leases.
func SetClock(r *Idempotency, now func() time.Time) { r.now = now }
