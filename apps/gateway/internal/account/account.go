// Package account owns user accounts: registration with salted password hashes (bcrypt),
// credential checks, and admin accounts provisioned from configuration.
package account

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"

	"github.com/groupbuy/groupbuy/pkg/identity"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Errors of the account domain.
var (
	ErrUsernameTaken      = problem.New(problem.CodeConflict, "the username is taken")
	ErrInvalidCredentials = problem.New(problem.CodeUnauthorized, "invalid username or password")
	ErrNotFound           = errors.New("account not found")
	ErrExists             = errors.New("account exists")
)

// Limits on credentials.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 72 // bcrypt ignores bytes beyond 72
)

var usernameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{2,31}$`)

// Account is a stored user.
type Account struct {
	ID           string    `json:"id"`
	Username     string    `json:"username"`
	PasswordHash string    `json:"password_hash"`
	Role         string    `json:"role"`
	CreatedAt    time.Time `json:"created_at"`
}

// User returns the identity of the account.
func (a Account) User() identity.User {
	return identity.User{ID: a.ID, Username: a.Username, Role: a.Role}
}

// Repository stores accounts keyed by username.
type Repository interface {
	Get(ctx context.Context, username string) (Account, error)
	// Create fails with ErrExists when the username is taken.
	Create(ctx context.Context, a Account) error
	// Upsert creates or replaces the account (used for configured admins).
	Upsert(ctx context.Context, username string, fn func(a *Account, found bool) error) error
}

// IDs issues identifiers.
type IDs interface{ NextString() string }

// Service implements registration and login.
type Service struct {
	repo     Repository
	ids      IDs
	cost     int
	dummy    []byte
	now      func() time.Time
	reserved map[string]bool
}

//go:embed common-passwords.txt
var commonPasswordList string

// commonPasswords are refused at registration (lower-cased).
var commonPasswords = func() map[string]bool {
	m := map[string]bool{}
	for line := range strings.Lines(commonPasswordList) {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			m[strings.ToLower(line)] = true
		}
	}
	return m
}()

// Reserve keeps usernames (the configured admins) from being registered by anyone: only
// EnsureAdmin creates them. A reserved name answers as a taken one.
func (s *Service) Reserve(usernames ...string) {
	if s.reserved == nil {
		s.reserved = map[string]bool{}
	}
	for _, u := range usernames {
		s.reserved[normalize(u)] = true
	}
}

// NewService returns a service hashing passwords with the given bcrypt cost.
func NewService(repo Repository, ids IDs, cost int) (*Service, error) {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		return nil, fmt.Errorf("bcrypt cost %d out of range %d..%d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	// Login of an unknown user still runs one bcrypt comparison, so timing does not reveal
	// which usernames exist.
	dummy, err := bcrypt.GenerateFromPassword([]byte("dummy-password-for-timing"), cost)
	if err != nil {
		return nil, err
	}
	return &Service{repo: repo, ids: ids, cost: cost, dummy: dummy, now: time.Now}, nil
}

// Credentials is the input of Register and Login.
type Credentials struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func normalize(username string) string { return strings.ToLower(strings.TrimSpace(username)) }

func (c Credentials) validate() error {
	var f []problem.FieldError
	if !usernameRE.MatchString(normalize(c.Username)) {
		f = append(f, problem.FieldError{Field: "username", Reason: "must be 3-32 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit"})
	}
	n := utf8.RuneCountInString(c.Password)
	if n < MinPasswordLen || len(c.Password) > MaxPasswordLen {
		f = append(f, problem.FieldError{Field: "password", Reason: fmt.Sprintf("must be %d to %d bytes long", MinPasswordLen, MaxPasswordLen)})
	}
	if len(f) > 0 {
		return problem.Invalid(f...)
	}
	return nil
}

// Register creates a user account.
func (s *Service) Register(ctx context.Context, c Credentials) (Account, error) {
	if err := c.validate(); err != nil {
		return Account{}, err
	}
	if pw := strings.ToLower(c.Password); commonPasswords[pw] || pw == normalize(c.Username) {
		return Account{}, problem.Invalid(problem.FieldError{Field: "password", Reason: "is too common (it appears in breached-password lists) or equals the username"})
	}
	if s.reserved[normalize(c.Username)] {
		return Account{}, ErrUsernameTaken
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(c.Password), s.cost)
	if err != nil {
		return Account{}, fmt.Errorf("hash password: %w", err)
	}
	a := Account{
		ID:           s.ids.NextString(),
		Username:     normalize(c.Username),
		PasswordHash: string(hash),
		Role:         identity.RoleUser,
		CreatedAt:    s.now().UTC(),
	}
	if err := s.repo.Create(ctx, a); err != nil {
		if errors.Is(err, ErrExists) {
			return Account{}, ErrUsernameTaken
		}
		return Account{}, fmt.Errorf("create account: %w", err)
	}
	return a, nil
}

// Login checks credentials and returns the account.
func (s *Service) Login(ctx context.Context, c Credentials) (Account, error) {
	if c.Username == "" || c.Password == "" || len(c.Password) > MaxPasswordLen {
		return Account{}, ErrInvalidCredentials
	}
	a, err := s.repo.Get(ctx, normalize(c.Username))
	if errors.Is(err, ErrNotFound) {
		_ = bcrypt.CompareHashAndPassword(s.dummy, []byte(c.Password))
		return Account{}, ErrInvalidCredentials
	}
	if err != nil {
		return Account{}, err
	}
	if bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(c.Password)) != nil {
		return Account{}, ErrInvalidCredentials
	}
	return a, nil
}

// EnsureAdmin creates or updates the admin account username with password. An existing
// account of that name becomes an admin with that password; its id is kept.
func (s *Service) EnsureAdmin(ctx context.Context, username, password string) error {
	c := Credentials{Username: username, Password: password}
	if err := c.validate(); err != nil {
		return fmt.Errorf("admin %q: %w", username, err)
	}
	return s.repo.Upsert(ctx, normalize(username), func(a *Account, found bool) error {
		if found && a.Role == identity.RoleAdmin && bcrypt.CompareHashAndPassword([]byte(a.PasswordHash), []byte(password)) == nil {
			return ErrNoChange
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
		if err != nil {
			return err
		}
		if !found {
			a.ID = s.ids.NextString()
			a.Username = normalize(username)
			a.CreatedAt = s.now().UTC()
		}
		a.PasswordHash = string(hash)
		a.Role = identity.RoleAdmin
		return nil
	})
}

// ErrNoChange tells Repository.Upsert to skip the write.
var ErrNoChange = errors.New("account: no change")
