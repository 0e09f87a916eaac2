// Package daprstore keeps gateway accounts in the Dapr state store, one key per username.
package daprstore

import (
	"context"
	"errors"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/account"
	"github.com/groupbuy/groupbuy/pkg/daprstate"
)

// Accounts implements account.Repository.
type Accounts struct{ state *daprstate.Store }

// NewAccounts returns the repository.
func NewAccounts(s *daprstate.Store) *Accounts { return &Accounts{state: s} }

func key(username string) string { return "user:" + username }

// Get implements account.Repository.
func (r *Accounts) Get(ctx context.Context, username string) (account.Account, error) {
	var a account.Account
	_, err := r.state.Get(ctx, key(username), &a)
	if errors.Is(err, daprstate.ErrNotFound) {
		return account.Account{}, account.ErrNotFound
	}
	return a, err
}

// Create implements account.Repository.
func (r *Accounts) Create(ctx context.Context, a account.Account) error {
	err := r.state.Create(ctx, key(a.Username), a)
	if errors.Is(err, daprstate.ErrExists) {
		return account.ErrExists
	}
	return err
}

// Upsert implements account.Repository.
func (r *Accounts) Upsert(ctx context.Context, username string, fn func(a *account.Account, found bool) error) error {
	_, err := daprstate.Mutate(ctx, r.state, key(username), 10, func(a *account.Account, found bool) error {
		err := fn(a, found)
		if errors.Is(err, account.ErrNoChange) {
			return daprstate.ErrNoChange
		}
		return err
	})
	return err
}
