package harness

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// fakeRedis answers every command +OK (HELLO with an error) and records the commands in
// arrival order.
type fakeRedis struct {
	ln   net.Listener
	mu   sync.Mutex
	cmds [][]string
}

func startFakeRedis(t *testing.T) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					_, words, err := readCommand(r)
					if err != nil {
						return
					}
					reply := "+OK\r\n"
					if len(words) > 0 && strings.EqualFold(words[0], "HELLO") {
						reply = "-ERR unknown command 'HELLO'\r\n" // the client falls back to RESP2
					} else {
						f.mu.Lock()
						f.cmds = append(f.cmds, words)
						f.mu.Unlock()
					}
					if _, err := c.Write([]byte(reply)); err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { _ = ln.Close() })
	return f
}

func (f *fakeRedis) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.cmds {
		if len(c) > 3 && c[0] == "EVAL" {
			out = append(out, c[3])
		}
	}
	return out
}

// The gate holds the first write of the armed key while other commands, and the same key's
// later writes on other connections, pass; released, the held write lands last.
func TestRedisGateHoldsOneWrite(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	up := startFakeRedis(t)
	g, err := StartRedisGate(up.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	dial := func() *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: g.Addr(), Protocol: 2, DisableIdentity: true, ReadTimeout: 5 * time.Second})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	first, second := dial(), dial()
	big := string(make([]byte, 100_000)) // a bucket document is large: read it whole

	held, release := g.Hold(StateWrite("inventory", "stock:d:0"))
	defer release()
	if err := first.Do(ctx, "EVAL", "script", 1, "inventory||stock:d:1", "v").Err(); err != nil {
		t.Fatalf("unmatched write: %v", err)
	}
	late := make(chan error, 1)
	go func() { late <- first.Do(ctx, "EVAL", "script", 1, "inventory||stock:d:0", big).Err() }()
	select {
	case <-held:
	case <-ctx.Done():
		t.Fatal("the armed write was not held")
	}
	if err := second.Do(ctx, "EVAL", "script", 1, "inventory||stock:d:0", "other").Err(); err != nil {
		t.Fatalf("a write on another connection while one is held: %v", err)
	}
	release()
	if err := <-late; err != nil {
		t.Fatalf("held write: %v", err)
	}
	want := []string{"inventory||stock:d:1", "inventory||stock:d:0", "inventory||stock:d:0"}
	if got := up.names(); !slices.Equal(got, want) {
		t.Errorf("writes reached Redis as %v, want %v", got, want)
	}
	up.mu.Lock()
	lastData := up.cmds[len(up.cmds)-1][4]
	up.mu.Unlock()
	if lastData != big {
		t.Errorf("the held write arrived with %d bytes of data, want %d", len(lastData), len(big))
	}
}
