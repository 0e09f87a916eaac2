package account_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/bcrypt"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/account"
	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// fakeRepo is an in-memory account.Repository with the semantics of the Dapr adapter: Create
// refuses a taken username, Upsert skips the write when fn answers ErrNoChange.
type fakeRepo struct {
	mu     sync.Mutex
	byName map[string]account.Account
	writes int
	err    error // returned by every call when set
}

func newFakeRepo() *fakeRepo { return &fakeRepo{byName: map[string]account.Account{}} }

func (r *fakeRepo) Get(_ context.Context, username string) (account.Account, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return account.Account{}, r.err
	}
	a, ok := r.byName[username]
	if !ok {
		return account.Account{}, account.ErrNotFound
	}
	return a, nil
}

func (r *fakeRepo) Create(_ context.Context, a account.Account) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	if _, ok := r.byName[a.Username]; ok {
		return account.ErrExists
	}
	r.byName[a.Username] = a
	r.writes++
	return nil
}

func (r *fakeRepo) Upsert(_ context.Context, username string, fn func(a *account.Account, found bool) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	a, found := r.byName[username]
	if err := fn(&a, found); err != nil {
		if errors.Is(err, account.ErrNoChange) {
			return nil
		}
		return err
	}
	r.byName[username] = a
	r.writes++
	return nil
}

func (r *fakeRepo) get(username string) (account.Account, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.byName[username]
	return a, ok
}

func (r *fakeRepo) writeCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.writes
}

type fakeIDs struct {
	mu sync.Mutex
	n  int
}

func (f *fakeIDs) NextString() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n++
	return strconv.Itoa(f.n)
}

func newService(t *testing.T, repo account.Repository) *account.Service {
	t.Helper()
	svc, err := account.NewService(repo, &fakeIDs{}, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func fieldNames(err error) []string {
	var perr *problem.Error
	if !errors.As(err, &perr) {
		return nil
	}
	var names []string
	for _, f := range perr.Fields {
		names = append(names, f.Field)
	}
	return names
}

func TestNewServiceCost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		cost    int
		wantErr bool
	}{
		{"min", bcrypt.MinCost, false},
		{"below min", bcrypt.MinCost - 1, true},
		{"above max", bcrypt.MaxCost + 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := account.NewService(newFakeRepo(), &fakeIDs{}, tt.cost)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Errorf("NewService(cost %d) error = %v, want error %t", tt.cost, err, tt.wantErr)
			}
		})
	}
}

func TestRegisterValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         account.Credentials
		wantFields []string // nil: accepted
		wantName   string   // stored username when accepted
	}{
		{name: "valid", in: account.Credentials{Username: "alice", Password: "correct horse"}, wantName: "alice"},
		{name: "normalized to lower case and trimmed", in: account.Credentials{Username: "  Alice_B.C-1 ", Password: "correct horse"}, wantName: "alice_b.c-1"},
		{name: "shortest username", in: account.Credentials{Username: "abc", Password: "tea-at-8pm"}, wantName: "abc"},
		{name: "longest username", in: account.Credentials{Username: strings.Repeat("a", 32), Password: "tea-at-8pm"}, wantName: strings.Repeat("a", 32)},
		{name: "longest password", in: account.Credentials{Username: "alice", Password: strings.Repeat("p", account.MaxPasswordLen)}, wantName: "alice"},
		{name: "username too short", in: account.Credentials{Username: "ab", Password: "12345678"}, wantFields: []string{"username"}},
		{name: "username too long", in: account.Credentials{Username: strings.Repeat("a", 33), Password: "12345678"}, wantFields: []string{"username"}},
		{name: "username starts with punctuation", in: account.Credentials{Username: "_alice", Password: "12345678"}, wantFields: []string{"username"}},
		{name: "username with space", in: account.Credentials{Username: "al ice", Password: "12345678"}, wantFields: []string{"username"}},
		{name: "username with colon", in: account.Credentials{Username: "user:alice", Password: "12345678"}, wantFields: []string{"username"}},
		{name: "username non-ascii", in: account.Credentials{Username: "alïce", Password: "12345678"}, wantFields: []string{"username"}},
		{name: "empty username", in: account.Credentials{Password: "12345678"}, wantFields: []string{"username"}},
		{name: "password too short", in: account.Credentials{Username: "alice", Password: "1234567"}, wantFields: []string{"password"}},
		{name: "password too long", in: account.Credentials{Username: "alice", Password: strings.Repeat("p", account.MaxPasswordLen+1)}, wantFields: []string{"password"}},
		{name: "multi-byte password over 72 bytes", in: account.Credentials{Username: "alice", Password: strings.Repeat("é", 37)}, wantFields: []string{"password"}},
		{name: "both invalid", in: account.Credentials{}, wantFields: []string{"username", "password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := newFakeRepo()
			svc := newService(t, repo)

			got, err := svc.Register(context.Background(), tt.in)

			if tt.wantFields != nil {
				if code := problem.CodeOf(err); code != problem.CodeValidation {
					t.Fatalf("Register() error = %v (code %q), want %q", err, code, problem.CodeValidation)
				}
				if diff := cmp.Diff(fieldNames(err), tt.wantFields); diff != "" {
					t.Errorf("invalid fields mismatch (-got +want):\n%s", diff)
				}
				if n := repo.writeCount(); n != 0 {
					t.Errorf("repository writes = %d, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("Register() error = %v", err)
			}
			if got.Username != tt.wantName || got.Role != identity.RoleUser || got.ID == "" {
				t.Errorf("account = %+v, want username %q, role %q and an id", got, tt.wantName, identity.RoleUser)
			}
			stored, ok := repo.get(tt.wantName)
			if !ok {
				t.Fatalf("account %q was not stored", tt.wantName)
			}
			if diff := cmp.Diff(stored, got); diff != "" {
				t.Errorf("stored account mismatch (-got +want):\n%s", diff)
			}
			if stored.PasswordHash == tt.in.Password {
				t.Error("the password is stored in clear")
			}
			if err := bcrypt.CompareHashAndPassword([]byte(stored.PasswordHash), []byte(tt.in.Password)); err != nil {
				t.Errorf("stored hash does not match the password: %v", err)
			}
		})
	}
}

func TestRegisterDuplicate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		second string
	}{
		{"same name", "alice"},
		{"differs only in case", "ALICE"},
		{"differs only in surrounding space", " alice "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := newFakeRepo()
			svc := newService(t, repo)
			ctx := context.Background()
			first, err := svc.Register(ctx, account.Credentials{Username: "alice", Password: "first-password"})
			if err != nil {
				t.Fatal(err)
			}

			_, err = svc.Register(ctx, account.Credentials{Username: tt.second, Password: "second-password"})

			if !errors.Is(err, account.ErrUsernameTaken) {
				t.Errorf("Register() error = %v, want %v", err, account.ErrUsernameTaken)
			}
			if got := problem.CodeOf(err); got != problem.CodeConflict {
				t.Errorf("code = %q, want %q", got, problem.CodeConflict)
			}
			if stored, _ := repo.get("alice"); stored.ID != first.ID {
				t.Errorf("stored account id = %q, want the first registration's %q", stored.ID, first.ID)
			}
		})
	}
}

func TestRegisterRepositoryError(t *testing.T) {
	t.Parallel()
	repo := newFakeRepo()
	repo.err = errors.New("state store down")
	svc := newService(t, repo)

	_, err := svc.Register(context.Background(), account.Credentials{Username: "alice", Password: "correct horse"})

	if err == nil || errors.Is(err, account.ErrUsernameTaken) {
		t.Errorf("Register() error = %v, want the repository error, not %v", err, account.ErrUsernameTaken)
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	repo := newFakeRepo()
	svc := newService(t, repo)
	registered, err := svc.Register(context.Background(), account.Credentials{Username: "alice", Password: "correct horse"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      account.Credentials
		wantErr error
	}{
		{name: "right password", in: account.Credentials{Username: "alice", Password: "correct horse"}},
		{name: "username in another case", in: account.Credentials{Username: " Alice", Password: "correct horse"}},
		{name: "wrong password", in: account.Credentials{Username: "alice", Password: "wrong horse"}, wantErr: account.ErrInvalidCredentials},
		{name: "password in another case", in: account.Credentials{Username: "alice", Password: "Correct Horse"}, wantErr: account.ErrInvalidCredentials},
		{name: "unknown user", in: account.Credentials{Username: "bob", Password: "correct horse"}, wantErr: account.ErrInvalidCredentials},
		{name: "empty password", in: account.Credentials{Username: "alice"}, wantErr: account.ErrInvalidCredentials},
		{name: "empty username", in: account.Credentials{Password: "correct horse"}, wantErr: account.ErrInvalidCredentials},
		{
			name:    "password over 72 bytes sharing the prefix",
			in:      account.Credentials{Username: "alice", Password: "correct horse" + strings.Repeat("x", 60)},
			wantErr: account.ErrInvalidCredentials,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := svc.Login(context.Background(), tt.in)

			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Login() error = %v, want %v", err, tt.wantErr)
				}
				if code := problem.CodeOf(err); code != problem.CodeUnauthorized {
					t.Errorf("code = %q, want %q", code, problem.CodeUnauthorized)
				}
				return
			}
			if err != nil {
				t.Fatalf("Login() error = %v", err)
			}
			if diff := cmp.Diff(got, registered); diff != "" {
				t.Errorf("account mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestLoginRepositoryError(t *testing.T) {
	t.Parallel()
	repo := newFakeRepo()
	repo.err = errors.New("state store down")
	svc := newService(t, repo)

	_, err := svc.Login(context.Background(), account.Credentials{Username: "alice", Password: "correct horse"})

	if err == nil || errors.Is(err, account.ErrInvalidCredentials) {
		t.Errorf("Login() error = %v, want the repository error, not invalid credentials", err)
	}
}

func TestEnsureAdmin(t *testing.T) {
	t.Parallel()
	created := time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC)
	hash := func(t *testing.T, pw string) string {
		t.Helper()
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	tests := []struct {
		name       string
		existing   func(t *testing.T) *account.Account
		username   string
		password   string
		wantErr    bool
		wantWrites int
		want       account.Account // PasswordHash is checked against password instead
	}{
		{
			name:       "creates a missing admin",
			username:   "Root",
			password:   "admin-password",
			wantWrites: 1,
			want:       account.Account{ID: "1", Username: "root", Role: identity.RoleAdmin},
		},
		{
			name: "updates an admin's password",
			existing: func(t *testing.T) *account.Account {
				return &account.Account{ID: "a7", Username: "root", PasswordHash: hash(t, "old-password"), Role: identity.RoleAdmin, CreatedAt: created}
			},
			username:   "root",
			password:   "admin-password",
			wantWrites: 1,
			want:       account.Account{ID: "a7", Username: "root", Role: identity.RoleAdmin, CreatedAt: created},
		},
		{
			name: "promotes a user and keeps the id",
			existing: func(t *testing.T) *account.Account {
				return &account.Account{ID: "u9", Username: "root", PasswordHash: hash(t, "admin-password"), Role: identity.RoleUser, CreatedAt: created}
			},
			username:   "root",
			password:   "admin-password",
			wantWrites: 1,
			want:       account.Account{ID: "u9", Username: "root", Role: identity.RoleAdmin, CreatedAt: created},
		},
		{
			name: "no-op when already admin with that password",
			existing: func(t *testing.T) *account.Account {
				return &account.Account{ID: "a7", Username: "root", PasswordHash: hash(t, "admin-password"), Role: identity.RoleAdmin, CreatedAt: created}
			},
			username:   "root",
			password:   "admin-password",
			wantWrites: 0,
			want:       account.Account{ID: "a7", Username: "root", Role: identity.RoleAdmin, CreatedAt: created},
		},
		{
			name:     "invalid password",
			username: "root",
			password: "short",
			wantErr:  true,
		},
		{
			name:     "invalid username",
			username: "r",
			password: "admin-password",
			wantErr:  true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			repo := newFakeRepo()
			var before account.Account
			if tt.existing != nil {
				before = *tt.existing(t)
				repo.byName[before.Username] = before
			}
			svc := newService(t, repo)

			err := svc.EnsureAdmin(context.Background(), tt.username, tt.password)

			if tt.wantErr {
				if err == nil {
					t.Error("EnsureAdmin() error = nil, want an error")
				}
				if n := repo.writeCount(); n != 0 {
					t.Errorf("repository writes = %d, want 0", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("EnsureAdmin() error = %v", err)
			}
			if n := repo.writeCount(); n != tt.wantWrites {
				t.Errorf("repository writes = %d, want %d", n, tt.wantWrites)
			}
			got, ok := repo.get(tt.want.Username)
			if !ok {
				t.Fatalf("account %q not stored", tt.want.Username)
			}
			if err := bcrypt.CompareHashAndPassword([]byte(got.PasswordHash), []byte(tt.password)); err != nil {
				t.Errorf("stored hash does not match the admin password: %v", err)
			}
			if tt.wantWrites == 0 && got.PasswordHash != before.PasswordHash {
				t.Error("the no-op rewrote the password hash")
			}
			got.PasswordHash = ""
			if tt.existing == nil {
				if got.CreatedAt.IsZero() {
					t.Error("created admin has no creation time")
				}
				got.CreatedAt = time.Time{}
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("stored account mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

// The admin can log in with the configured password after provisioning.
func TestEnsureAdminThenLogin(t *testing.T) {
	t.Parallel()
	svc := newService(t, newFakeRepo())
	ctx := context.Background()
	if err := svc.EnsureAdmin(ctx, "root", "admin-password"); err != nil {
		t.Fatal(err)
	}

	got, err := svc.Login(ctx, account.Credentials{Username: "root", Password: "admin-password"})

	if err != nil {
		t.Fatalf("Login() error = %v", err)
	}
	if diff := cmp.Diff(got.User(), identity.User{ID: got.ID, Username: "root", Role: identity.RoleAdmin}); diff != "" {
		t.Errorf("user mismatch (-got +want):\n%s", diff)
	}
}

// Registration refuses the passwords breaches made common (and the username as password),
// whatever their case, and the configured admin names, answering those as taken.
func TestRegisterRefusesCommonPasswordsAndReservedNames(t *testing.T) {
	t.Parallel()
	svc, err := account.NewService(newFakeRepo(), &fakeIDs{}, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	svc.Reserve("Admin", "ops")
	for _, pw := range []string{"password123", "PassWord123", "12345678", "qwertyuiop", "iloveyou", "carol-the-user"} {
		_, err := svc.Register(context.Background(), account.Credentials{Username: "carol-the-user", Password: pw})
		var pe *problem.Error
		if !errors.As(err, &pe) || pe.Code != problem.CodeValidation || len(pe.Fields) != 1 || pe.Fields[0].Field != "password" {
			t.Errorf("password %q: err = %v, want a validation error on password", pw, err)
		}
	}
	for _, name := range []string{"admin", " ADMIN ", "ops"} {
		if _, err := svc.Register(context.Background(), account.Credentials{Username: name, Password: "a-long-passphrase"}); !errors.Is(err, account.ErrUsernameTaken) {
			t.Errorf("reserved %q: err = %v, want taken", name, err)
		}
	}
	if _, err := svc.Register(context.Background(), account.Credentials{Username: "carol", Password: "a-long-passphrase"}); err != nil {
		t.Errorf("an ordinary registration: %v", err)
	}
}
