package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
)

// RedisGate is a TCP proxy in front of Redis that can hold back one command. Hold arms it
// with a predicate over the command's words; the first command that matches waits before
// reaching Redis until the test lets it go, as a write still on the network does. Everything
// else passes untouched, replies included. Point a stack's state store at Addr (component
// metadata redisHost) to place another replica's work between one replica's read and its
// write, which no hook in the processes can do.
type RedisGate struct {
	upstream string
	ln       net.Listener

	mu    sync.Mutex
	armed func(cmd []string) bool
	held  chan struct{} // closed when the armed command waits
	open  chan struct{} // closed to let it go
	conns map[net.Conn]struct{}
	done  bool
	stop  chan struct{} // closed by Close: a held command is dropped
	wg    sync.WaitGroup
}

// StartRedisGate listens on a free loopback port and forwards every connection to upstream.
func StartRedisGate(upstream string) (*RedisGate, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("redis gate: %w", err)
	}
	g := &RedisGate{upstream: upstream, ln: ln, conns: map[net.Conn]struct{}{}, stop: make(chan struct{})}
	g.wg.Add(1)
	go g.accept()
	return g, nil
}

// Addr is the gate's host:port.
func (g *RedisGate) Addr() string { return g.ln.Addr().String() }

// Hold arms the gate: the next command for which match is true waits until release is
// called; held is closed once it waits. Arming again replaces a predicate that held nothing.
// release is safe to call more than once, and disarms a gate that held nothing.
func (g *RedisGate) Hold(match func(cmd []string) bool) (held <-chan struct{}, release func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	h, o := make(chan struct{}), make(chan struct{})
	g.armed, g.held, g.open = match, h, o
	var once sync.Once
	return h, func() {
		once.Do(func() {
			g.mu.Lock()
			if g.open == o {
				g.armed = nil
			}
			g.mu.Unlock()
			close(o)
		})
	}
}

// Close stops listening, cuts every connection (a held command never reaches Redis) and
// waits for the gate's goroutines.
func (g *RedisGate) Close() error {
	g.mu.Lock()
	if !g.done {
		close(g.stop)
	}
	g.done = true
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	err := g.ln.Close()
	g.wg.Wait()
	return err
}

// StateWrite matches a Dapr state store write of key for app (the Redis state store keeps
// "<app>||<key>" and writes it with a Lua script: EVAL script 1 <key> ...).
func StateWrite(app, key string) func(cmd []string) bool {
	full := app + "||" + key
	return func(cmd []string) bool {
		return len(cmd) > 3 && (strings.EqualFold(cmd[0], "EVAL") || strings.EqualFold(cmd[0], "EVALSHA")) && cmd[3] == full
	}
}

func (g *RedisGate) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.wg.Add(1)
		go g.serve(c)
	}
}

// track registers c to be cut by Close; false when the gate is closing.
func (g *RedisGate) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		_ = c.Close()
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *RedisGate) serve(client net.Conn) {
	defer g.wg.Done()
	if !g.track(client) {
		return
	}
	server, err := net.Dial("tcp", g.upstream)
	if err != nil || !g.track(server) {
		_ = client.Close()
		return
	}
	defer func() { _ = client.Close(); _ = server.Close() }()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		_, _ = io.Copy(client, server) // replies, verbatim
		_ = client.Close()
	}()
	r := bufio.NewReader(client)
	for {
		raw, words, err := readCommand(r)
		if err != nil {
			return
		}
		if open := g.check(words); open != nil {
			select {
			case <-open:
			case <-g.stop:
				return
			}
		}
		if _, err := server.Write(raw); err != nil {
			return
		}
	}
}

// check disarms the gate and returns the channel to wait on when cmd is the one to hold.
func (g *RedisGate) check(cmd []string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.armed == nil || cmd == nil || !g.armed(cmd) {
		return nil
	}
	g.armed = nil
	close(g.held)
	return g.open
}

// readCommand reads one client command: a RESP array of bulk strings, as every Redis client
// library sends them (an inline command passes through whole, without words).
func readCommand(r *bufio.Reader) (raw []byte, words []string, err error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, nil, err
	}
	raw = line
	if line[0] != '*' {
		return raw, nil, nil
	}
	n, err := strconv.Atoi(strings.TrimRight(string(line[1:]), "\r\n"))
	if err != nil {
		return nil, nil, fmt.Errorf("redis gate: array header %q: %w", line, err)
	}
	for range n {
		hdr, err := r.ReadBytes('\n')
		if err != nil {
			return nil, nil, err
		}
		raw = append(raw, hdr...)
		if hdr[0] != '$' {
			return nil, nil, errors.New("redis gate: array element is not a bulk string")
		}
		size, err := strconv.Atoi(strings.TrimRight(string(hdr[1:]), "\r\n"))
		if err != nil || size < 0 {
			return nil, nil, fmt.Errorf("redis gate: bulk header %q", hdr)
		}
		buf := make([]byte, size+2) // the data and its CRLF
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, nil, err
		}
		raw = append(raw, buf...)
		words = append(words, string(buf[:size]))
	}
	return raw, words, nil
}
