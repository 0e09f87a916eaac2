package testinfra

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// vhostAdmin creates and deletes RabbitMQ vhosts. Two implementations: the management HTTP
// API, and rabbitmqctl for brokers without the management plugin (it needs the Erlang cookie,
// so in practice root or the rabbitmq user).
type vhostAdmin interface {
	String() string
	create(ctx context.Context, vhost, user string) error
	delete(ctx context.Context, vhost string) error
	list(ctx context.Context) ([]string, error)
}

// brokerAdmins returns the ways to administer the broker of amqpURL, preferred first.
func brokerAdmins(amqpURL, managementURL string) ([]vhostAdmin, amqp.URI, error) {
	uri, err := amqp.ParseURI(amqpURL)
	if err != nil {
		return nil, amqp.URI{}, fmt.Errorf("parse rabbitmq url %s: %w", redactURL(amqpURL), err)
	}
	if managementURL == "" {
		managementURL = "http://" + net.JoinHostPort(uri.Host, "15672")
	}
	mgmt := &managementAdmin{
		base:     strings.TrimSuffix(managementURL, "/"),
		user:     uri.Username,
		password: uri.Password,
		client:   &http.Client{Timeout: 10 * time.Second},
	}
	// rabbitmqctl administers the node on this machine: no use for a broker elsewhere.
	if !isLoopback(uri.Host) {
		return []vhostAdmin{mgmt}, uri, nil
	}
	return []vhostAdmin{mgmt, ctlAdmin{}}, uri, nil
}

// createVhost tries each admin in turn and returns the one that worked, so that the same one
// deletes the vhost again.
func createVhost(ctx context.Context, admins []vhostAdmin, vhost, user string) (vhostAdmin, error) {
	var errs []error
	for _, a := range admins {
		err := a.create(ctx, vhost, user)
		if err == nil {
			return a, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", a, err))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("create rabbitmq vhost %s: %w\n"+
		"fix one of: enable the management plugin (rabbitmq-plugins enable rabbitmq_management) or point %s at it; "+
		"run the tests as a user allowed to run rabbitmqctl (root or rabbitmq); or use %s=testcontainers",
		vhost, errors.Join(errs...), EnvRabbitManagement, EnvMode)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// withVhost returns amqpURL pointing at vhost.
func withVhost(amqpURL, vhost string) (string, error) {
	u, err := url.Parse(amqpURL)
	if err != nil {
		return "", fmt.Errorf("parse rabbitmq url %s: %w", redactURL(amqpURL), err)
	}
	u.Path = "/" + vhost
	u.RawPath = "/" + url.PathEscape(vhost)
	return u.String(), nil
}

// redactURL hides the password of a URL meant for logs and errors.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "<unparsable url>"
	}
	return u.Redacted()
}

// waitAMQP dials amqpURL until a channel opens or ctx ends: a broker that has just started, or
// a vhost that was just created, may refuse the first attempts.
func waitAMQP(ctx context.Context, amqpURL string) error {
	var last error
	for {
		conn, err := amqp.DialConfig(amqpURL, amqp.Config{Dial: amqp.DefaultDial(3 * time.Second)})
		if err == nil {
			ch, cerr := conn.Channel()
			if cerr == nil {
				_ = ch.Close()
			}
			_ = conn.Close()
			if cerr == nil {
				return nil
			}
			err = cerr
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("amqp connect to %s: %w (last error: %w)", redactURL(amqpURL), ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// managementAdmin uses the management plugin's HTTP API.
type managementAdmin struct {
	base, user, password string
	client               *http.Client
}

func (m *managementAdmin) String() string { return "management api " + m.base }

func (m *managementAdmin) create(ctx context.Context, vhost, user string) error {
	if err := m.do(ctx, http.MethodPut, "/api/vhosts/"+url.PathEscape(vhost), map[string]string{"description": "groupbuy integration test run"}, nil); err != nil {
		return err
	}
	perms := map[string]string{"configure": ".*", "write": ".*", "read": ".*"}
	if err := m.do(ctx, http.MethodPut, "/api/permissions/"+url.PathEscape(vhost)+"/"+url.PathEscape(user), perms, nil); err != nil {
		return errors.Join(err, m.delete(context.WithoutCancel(ctx), vhost))
	}
	return nil
}

func (m *managementAdmin) delete(ctx context.Context, vhost string) error {
	err := m.do(ctx, http.MethodDelete, "/api/vhosts/"+url.PathEscape(vhost), nil, nil)
	var se statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return nil
	}
	return err
}

func (m *managementAdmin) list(ctx context.Context) ([]string, error) {
	var vhosts []struct {
		Name string `json:"name"`
	}
	if err := m.do(ctx, http.MethodGet, "/api/vhosts", nil, &vhosts); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(vhosts))
	for _, v := range vhosts {
		names = append(names, v.Name)
	}
	return names, nil
}

type statusError struct {
	code int
	body string
}

func (e statusError) Error() string { return fmt.Sprintf("http %d: %s", e.code, e.body) }

func (m *managementAdmin) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.base+path, body)
	if err != nil {
		return err
	}
	req.SetBasicAuth(m.user, m.password)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return statusError{code: resp.StatusCode, body: strings.TrimSpace(string(b))}
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// ctlAdmin runs rabbitmqctl against the local node.
type ctlAdmin struct{}

func (ctlAdmin) String() string { return "rabbitmqctl" }

func (c ctlAdmin) create(ctx context.Context, vhost, user string) error {
	if _, err := c.run(ctx, "add_vhost", vhost); err != nil {
		return err
	}
	if _, err := c.run(ctx, "set_permissions", "-p", vhost, user, ".*", ".*", ".*"); err != nil {
		return errors.Join(err, c.delete(context.WithoutCancel(ctx), vhost))
	}
	return nil
}

func (c ctlAdmin) delete(ctx context.Context, vhost string) error {
	_, err := c.run(ctx, "delete_vhost", vhost)
	if err != nil && strings.Contains(err.Error(), "does not exist") {
		return nil
	}
	return err
}

func (c ctlAdmin) list(ctx context.Context) ([]string, error) {
	out, err := c.run(ctx, "list_vhosts", "--quiet", "--no-table-headers", "name")
	if err != nil {
		return nil, err
	}
	var names []string
	for line := range strings.Lines(out) {
		if name := strings.TrimRight(line, "\r\n"); name != "" {
			names = append(names, name)
		}
	}
	return names, nil
}

func (ctlAdmin) run(ctx context.Context, args ...string) (string, error) {
	path, err := exec.LookPath("rabbitmqctl")
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("rabbitmqctl %s: %w: %s", args[0], err, firstLines(stdout.String()+"\n"+stderr.String(), 3))
	}
	return stdout.String(), nil
}

// firstLines joins the first n non-blank lines of s: enough of rabbitmqctl's output to say
// what went wrong ("Only root or rabbitmq should run rabbitmqctl") without its usage text.
func firstLines(s string, n int) string {
	var lines []string
	for line := range strings.Lines(s) {
		if line = strings.TrimSpace(line); line != "" && len(lines) < n {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, " / ")
}
