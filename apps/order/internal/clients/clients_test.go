package clients_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/groupbuy/groupbuy/apps/order/internal/clients"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// errCaller answers every call with err.
type errCaller struct{ err error }

func (c errCaller) Call(context.Context, string, string, string, http.Header, any, any) error {
	return c.err
}

// A commit that finds no hold is a repeat of one inventory already applied (its finished
// hold left the recent-ops window): done. Other failures stay failures.
func TestCommitOfAForgottenHoldSucceeds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		wantErr bool
	}{
		{"committed", nil, false},
		{"no hold any more", problem.New(problem.CodeNotFound, "the order holds no stock of this deal"), false},
		{"released", problem.New(problem.CodeConflict, "the order's hold was released"), true},
		{"inventory down", problem.New(problem.CodeUnavailable, "unavailable"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := clients.NewInventory(errCaller{tt.err}, "inventory").Commit(context.Background(), "d1", "o1")
			if (err != nil) != tt.wantErr {
				t.Errorf("Commit() error = %v, want error %t", err, tt.wantErr)
			}
		})
	}
}
