package daprstore

import (
	"testing"
	"time"

	"github.com/groupbuy/groupbuy/apps/group/internal/group"
	"github.com/groupbuy/groupbuy/pkg/idempotency/idempotencytest"
)

// Records are stored as the app stored group.IdemRecord before pkg/idempotency: a record
// written by either form reads the same in the other.
func TestIdemDocIsStoredLikeIdemRecord(t *testing.T) {
	t.Parallel()
	at := time.Date(2030, 1, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		rec  group.IdemRecord
	}{
		{"in flight", group.IdemRecord{Hash: "h", GroupID: "g1", OrderID: "o1", LeaseUntil: at.Add(30 * time.Second), CreatedAt: at}},
		{"done", group.IdemRecord{Hash: "h", GroupID: "g1", OrderID: "o1", Done: true, Status: 201, Body: []byte(`{"id":"o1"}`), CreatedAt: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			idempotencytest.StoredLike(t, tt.rec, idemDoc.domain)
		})
	}
}
