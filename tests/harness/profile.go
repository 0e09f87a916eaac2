package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/groupbuy/groupbuy/pkg/devstack"
)

// Profiles: the default (Redis state, RabbitMQ pub/sub, components/) and "postgres"
// (components/profiles/postgres: PostgreSQL state store, Redis Streams pub/sub), picked by
// GROUPBUY_TEST_PROFILE. The apps and tests are the same; only the overlay, the component
// metadata and how the tests read the stores differ.
const (
	ProfileDefault  = ""
	ProfilePostgres = "postgres"
)

// relayPubSubs names the order relay's pub/sub components as components/ declares them
// (components/pubsub-relay.yaml: pubsub-relay-0..N), so every one is pointed at the stack's
// broker however many there are; the postgres overlay declares the same names.
func relayPubSubs() ([]string, error) {
	resources, err := devstack.LoadResources(filepath.Join(RepoRoot(), "components"))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, r := range resources {
		if r.Kind == "Component" && strings.HasPrefix(r.Name, "pubsub-relay-") {
			names = append(names, r.Name)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no pubsub-relay-N component in %s", filepath.Join(RepoRoot(), "components"))
	}
	return names, nil
}

// EnvProfile selects the infrastructure profile of the stacks a test run starts.
const EnvProfile = "GROUPBUY_TEST_PROFILE"

// EnvPostgresAdmin is a libpq URL of a PostgreSQL role allowed to create databases; each
// stack of the postgres profile gets a database of its own, dropped when it stops.
const EnvPostgresAdmin = "GROUPBUY_TEST_POSTGRES_URL"

// Profile returns the profile named by the environment.
func Profile() (string, error) {
	switch p := os.Getenv(EnvProfile); p {
	case ProfileDefault, "default", "redis":
		return ProfileDefault, nil
	case ProfilePostgres:
		return p, nil
	default:
		return "", fmt.Errorf("%s=%q: unknown profile (want empty or %q)", EnvProfile, p, ProfilePostgres)
	}
}

func postgresAdminURL() string {
	if u := os.Getenv(EnvPostgresAdmin); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// pgDatabase is a database one stack owns.
type pgDatabase struct {
	name string
	pool *pgxpool.Pool
}

var dbNameRE = regexp.MustCompile(`[^a-z0-9_]`)

// createDatabase makes a fresh database for a stack.
func createDatabase(ctx context.Context, label string) (*pgDatabase, string, error) {
	name := "groupbuy_t_" + dbNameRE.ReplaceAllString(strings.ToLower(label), "_")
	admin, err := pgx.Connect(ctx, postgresAdminURL())
	if err != nil {
		return nil, "", fmt.Errorf("postgres at %s (set %s): %w", postgresAdminURL(), EnvPostgresAdmin, err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, "", err
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, "", fmt.Errorf("create database %s: %w", name, err)
	}
	cfg := admin.Config()
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", cfg.Host, cfg.Port, cfg.User, name)
	if cfg.Password != "" {
		dsn += " password=" + cfg.Password
	}
	pool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		return nil, "", err
	}
	// Dapr 1.16's state.postgresql creates its metadata table with CREATE TABLE IF NOT EXISTS
	// from every sidecar at once; on a fresh database two of them can collide on the table's
	// row type (42710 duplicate_object, which its retry does not cover) and the loser exits.
	// Creating the table first, with Dapr's own definition, makes every sidecar's statement a
	// no-op; the migrations that follow run under Dapr's row lock.
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS dapr_metadata (key text NOT NULL PRIMARY KEY, value text NOT NULL)`); err != nil {
		pool.Close()
		return nil, "", fmt.Errorf("prepare database %s: %w", name, err)
	}
	return &pgDatabase{name: name, pool: pool}, dsn, nil
}

// drop closes the pool and drops the database.
func (d *pgDatabase) drop(ctx context.Context) error {
	d.pool.Close()
	admin, err := pgx.Connect(ctx, postgresAdminURL())
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	_, err = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
	return err
}

// get reads one state row's value; found is false for a missing row.
func (d *pgDatabase) get(ctx context.Context, key string) ([]byte, bool, error) {
	var v []byte
	err := d.pool.QueryRow(ctx, `SELECT value FROM state WHERE key = $1 AND (expires_at IS NULL OR expires_at >= now())`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	return v, err == nil, err
}

// keys lists the state keys with the given prefix.
func (d *pgDatabase) keys(ctx context.Context, prefix string) ([]string, error) {
	rows, err := d.pool.Query(ctx, `SELECT key FROM state WHERE key LIKE $1 AND (expires_at IS NULL OR expires_at >= now())`, strings.ReplaceAll(prefix, "_", `\_`)+"%")
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// profileOverlay is the resources directory of a profile.
func profileOverlay(profile string) string {
	if profile == ProfileDefault {
		return ""
	}
	return filepath.Join(RepoRoot(), "components", "profiles", profile)
}
