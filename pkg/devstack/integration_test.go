//go:build integration

// Integration test of the supervisor against the real control plane and daprd. Build tag:
// integration. Needs daprd, placement and scheduler in $DAPR_BIN_DIR or ~/.dapr/bin
// (bash scripts/dapr-install.sh) and Redis on 127.0.0.1:6379 (the test uses DB 0 with a unique key it deletes; tests/testinfra owns DBs 1-15):
//
//	go test -tags integration -run TestSupervisor -v ./pkg/devstack/
package devstack

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	testRedisAddr = "127.0.0.1:6379"
	testRedisDB   = "0"
	fakeAppID     = "devstack-fake"
	peerAppID     = "devstack-peer"
)

func TestSupervisorRunsAppWithSidecar(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	dir := t.TempDir()
	copyDir(t, filepath.Join("testdata", "integration"), dir)
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "bin", "fakeapp"), "./testdata/fakeapp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build fakeapp: %v\n%s", err, out)
	}

	plan, err := Materialize(filepath.Join(dir, "dapr.yaml"), Options{
		OutDir:            filepath.Join(dir, "out"),
		Ports:             FreePorts(),
		AppEnv:            map[string]map[string]string{fakeAppID: {"FAKE_EXTRA": "yes"}},
		ComponentMetadata: map[string]map[string]string{"statestore": {"redisDB": testRedisDB}},
	})
	if err != nil {
		t.Fatalf("Materialize: %v", err)
	}
	app, _ := plan.App(fakeAppID)

	logs := newLogFiles(t, filepath.Join(dir, "logs"))
	sup, err := NewSupervisor(plan, SupervisorOptions{Output: logs.writer, ReadyTimeout: 90 * time.Second, StopGrace: 10 * time.Second})
	if err != nil {
		t.Fatalf("NewSupervisor: %v", err)
	}
	var pids []int
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		for _, p := range sup.Processes() {
			pids = append(pids, p.PID)
		}
		if err := sup.Stop(); err != nil {
			t.Errorf("Stop: %v", err)
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() || os.Getenv("DEVSTACK_DUMP_LOGS") != "" {
			logs.dump(t)
		}
	})

	if err := sup.EnsureInfra(ctx, false); err != nil {
		t.Fatalf("EnsureInfra: %v", err)
	}
	if err := sup.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}

	t.Run("app env is what dapr run would set", func(t *testing.T) {
		var got map[string]string
		getJSON(t, ctx, app.AppURL()+"/env", &got)
		want := map[string]string{
			"APP_ID":            fakeAppID,
			"APP_PORT":          strconv.Itoa(app.AppPort),
			"DAPR_HTTP_PORT":    strconv.Itoa(app.DaprHTTPPort),
			"DAPR_GRPC_PORT":    strconv.Itoa(app.DaprGRPCPort),
			"DAPR_METRICS_PORT": strconv.Itoa(app.MetricsPort),
			"APP_PROTOCOL":      "http",
			"ADMIN_PORT":        app.Env["ADMIN_PORT"],
			"LISTEN_HOST":       "127.0.0.1",
			"FAKE_EXTRA":        "yes",
			"BAD_TOKENS":        "0", // no request from daprd lacked APP_API_TOKEN
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("env (-want +got):\n%s", diff)
		}
		if app.Env["ADMIN_PORT"] == "9190" {
			t.Errorf("ADMIN_PORT was not remapped")
		}
	})

	t.Run("everything listens on loopback", func(t *testing.T) {
		// Dapr 1.16 placement and scheduler ignore --healthz-listen-address and serve healthz
		// on every interface (pkg/healthz/server listens on ":port"); those two are expected.
		allowed := map[int]bool{plan.Placement.HealthzPort: true, plan.Scheduler.HealthzPort: true}
		var pids []int
		for _, p := range sup.Processes() {
			pids = append(pids, p.PID)
		}
		for _, l := range nonLoopbackListeners(t, pids) {
			if !allowed[l.port] {
				t.Errorf("%s listens on %s", l.process, net.JoinHostPort(l.ip, strconv.Itoa(l.port)))
			}
		}
	})

	t.Run("sidecar requires the dapr api token", func(t *testing.T) {
		resp, err := http.Get(app.DaprHTTPURL() + "/v1.0/metadata")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got, want := resp.StatusCode, http.StatusUnauthorized; got != want {
			t.Errorf("metadata without token: status %d, want %d", got, want)
		}
	})

	t.Run("service invocation resolves through the template", func(t *testing.T) {
		// The peer's /echo answers 401 unless its daprd sends APP_API_TOKEN.
		got := doRequest(t, ctx, http.MethodPost, app.AppURL()+"/invoke/"+peerAppID, "ping", http.StatusOK)
		if got != "ping" {
			t.Errorf("echo through the sidecars = %q, want %q", got, "ping")
		}
		peer, _ := plan.App(peerAppID)
		var env map[string]string
		getJSON(t, ctx, peer.AppURL()+"/env", &env)
		if env["BAD_TOKENS"] != "0" {
			t.Errorf("daprd sent %s requests without APP_API_TOKEN", env["BAD_TOKENS"])
		}
	})

	key := "devstack-it-" + randomHex(t)
	redisKey := fakeAppID + "||" + key // state.redis default keyPrefix: the app id
	t.Cleanup(func() { _ = redisDo(testRedisAddr, testRedisDB, "DEL", redisKey) })

	t.Run("state round trip lands in redis", func(t *testing.T) {
		got := doRequest(t, ctx, http.MethodPut, app.AppURL()+"/state/"+key, "v1", http.StatusOK)
		if got != `"v1"` {
			t.Errorf("state read back = %s, want %q", got, `"v1"`)
		}
		data, err := redisHGet(testRedisAddr, testRedisDB, redisKey, "data")
		if err != nil {
			t.Fatalf("redis: %v", err)
		}
		if data != `"v1"` {
			t.Errorf("redis %s data = %q, want %q", redisKey, data, `"v1"`)
		}
	})

	t.Run("a killed app comes back on the same ports", func(t *testing.T) {
		if err := sup.KillApp(fakeAppID); err != nil {
			t.Fatalf("KillApp: %v", err)
		}
		if _, err := http.Get(app.AppURL() + "/readyz"); err == nil {
			t.Fatalf("app still answers after KillApp")
		}
		waitCtx, waitCancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer waitCancel()
		if err := sup.Wait(waitCtx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait after KillApp = %v, want the deadline (KillApp is not a failure)", err)
		}
		if err := sup.StartApp(ctx, fakeAppID); err != nil {
			t.Fatalf("StartApp: %v", err)
		}
		got := doRequest(t, ctx, http.MethodPut, app.AppURL()+"/state/"+key, "v2", http.StatusOK)
		if got != `"v2"` {
			t.Errorf("state after restart = %s, want %q", got, `"v2"`)
		}
		doRequest(t, ctx, http.MethodDelete, app.AppURL()+"/state/"+key, "", http.StatusNoContent)
		if n, err := redisExists(testRedisAddr, testRedisDB, redisKey); err != nil || n != 0 {
			t.Errorf("redis EXISTS %s = %d, %v; want 0", redisKey, n, err)
		}
	})

	t.Run("an unexpected exit is reported by Wait", func(t *testing.T) {
		var pid int
		for _, p := range sup.Processes() {
			if p.Name == fakeAppID {
				pid = p.PID
			}
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
		defer waitCancel()
		err := sup.Wait(waitCtx)
		if err == nil || !strings.Contains(err.Error(), fakeAppID+" exited unexpectedly") {
			t.Errorf("Wait = %v, want %s exited unexpectedly", err, fakeAppID)
		}
	})

	t.Run("stop leaves no process behind", func(t *testing.T) {
		stop()
		if len(pids) != 6 {
			t.Fatalf("expected placement, scheduler, and two apps with their sidecars, got pids %v", pids)
		}
		if left := processesInGroups(t, pids); len(left) > 0 {
			t.Errorf("processes left in the stack's process groups: %v", left)
		}
	})
}

// --- helpers ---

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatalf("copy %s: %v", src, err)
	}
}

// logFiles gives every process its own log file, dumped when the test fails.
type logFiles struct {
	dir   string
	mu    sync.Mutex
	files map[string]*os.File
	t     *testing.T
}

func newLogFiles(t *testing.T, dir string) *logFiles {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &logFiles{dir: dir, files: map[string]*os.File{}, t: t}
	t.Cleanup(func() {
		for _, f := range l.files {
			f.Close()
		}
	})
	return l
}

func (l *logFiles) writer(name string) io.Writer {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.files[name]; ok {
		return f
	}
	f, err := os.OpenFile(filepath.Join(l.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	l.files[name] = f
	return f
}

func (l *logFiles) dump(t *testing.T) {
	entries, _ := os.ReadDir(l.dir)
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join(l.dir, e.Name()))
		t.Logf("==== %s ====\n%s", e.Name(), data)
	}
}

func doRequest(t *testing.T, ctx context.Context, method, url, body string, want int) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, b)
	}
	return string(b)
}

func getJSON(t *testing.T, ctx context.Context, url string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(doRequest(t, ctx, http.MethodGet, url, "", http.StatusOK)), v); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
}

func randomHex(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// processesInGroups lists live processes (pid: command) whose process group is one of pgids.
func processesInGroups(t *testing.T, pgids []int) []string {
	t.Helper()
	want := map[int]bool{}
	for _, p := range pgids {
		want[p] = true
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var left []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces, so split after the last ')'.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		if len(fields) < 3 {
			continue
		}
		pgrp, _ := strconv.Atoi(fields[2])
		if want[pgrp] || want[pid] {
			left = append(left, fmt.Sprintf("%d: %s", pid, s[:i+1]))
		}
	}
	return left
}

type listener struct {
	process string
	ip      string
	port    int
}

// nonLoopbackListeners returns the TCP listening sockets of pids bound to a non-loopback address.
func nonLoopbackListeners(t *testing.T, pids []int) []listener {
	t.Helper()
	owner := map[string]string{} // socket inode → process
	for _, pid := range pids {
		fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
			if inode, ok := strings.CutPrefix(link, "socket:["); ok && err == nil {
				owner[strings.TrimSuffix(inode, "]")] = fmt.Sprintf("%s (pid %d)", strings.TrimSpace(string(comm)), pid)
			}
		}
	}
	var out []listener
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		data, err := os.ReadFile(table)
		if err != nil {
			t.Skipf("read %s: %v", table, err)
		}
		for _, line := range strings.Split(string(data), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" { // 0A: LISTEN
				continue
			}
			proc, ok := owner[f[9]]
			if !ok {
				continue
			}
			hexIP, hexPort, _ := strings.Cut(f[1], ":")
			port, _ := strconv.ParseInt(hexPort, 16, 32)
			ip := procNetIP(hexIP)
			if !ip.IsLoopback() {
				out = append(out, listener{process: proc, ip: ip.String(), port: int(port)})
			}
		}
	}
	return out
}

// procNetIP decodes an address of /proc/net/tcp{,6}: 32-bit words in host (little-endian) order.
func procNetIP(h string) net.IP {
	b, _ := hex.DecodeString(h)
	for i := 0; i+4 <= len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// A minimal RESP client, enough to read the state store directly.

func redisDo(addr, db string, args ...string) error {
	_, err := redisCall(addr, db, args...)
	return err
}

func redisHGet(addr, db, key, field string) (string, error) {
	return redisCall(addr, db, "HGET", key, field)
}

func redisExists(addr, db, key string) (int, error) {
	s, err := redisCall(addr, db, "EXISTS", key)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(s)
}

func redisCall(addr, db string, args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	if _, err := redisRoundTrip(c, r, "SELECT", db); err != nil {
		return "", err
	}
	return redisRoundTrip(c, r, args...)
}

func redisRoundTrip(w io.Writer, r *bufio.Reader, args ...string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return "", err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return "", fmt.Errorf("unexpected redis reply %q", line)
}
