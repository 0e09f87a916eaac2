// Package ids generates time-ordered 64-bit identifiers (Snowflake layout: 41 bits of
// milliseconds since Epoch, 10 bits of node id, 12 bits of sequence) rendered as decimal
// strings. Node ids must be unique among running replicas (configuration: NODE_ID).
package ids

import (
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Epoch is the zero of the timestamp field (2025-01-01T00:00:00Z).
var Epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

const (
	nodeBits = 10
	seqBits  = 12
	maxNode  = 1<<nodeBits - 1
	maxSeq   = 1<<seqBits - 1
)

// Generator issues ids for one node. It is safe for concurrent use.
type Generator struct {
	mu     sync.Mutex
	node   int64
	lastMS int64
	seq    int64
	now    func() time.Time
}

// New returns a generator for node (0..1023).
func New(node int) (*Generator, error) {
	if node < 0 || node > maxNode {
		return nil, fmt.Errorf("ids: node id %d out of range 0..%d", node, maxNode)
	}
	return &Generator{node: int64(node), now: time.Now}, nil
}

// Next returns the next id. Within one millisecond up to 4096 ids are issued; beyond that, or
// when the clock steps back, it waits for the clock to pass the last issued millisecond so
// ids stay unique and increasing.
func (g *Generator) Next() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := g.now().Sub(Epoch).Milliseconds()
	if ms < g.lastMS {
		ms = g.lastMS
	}
	if ms == g.lastMS {
		g.seq++
		if g.seq > maxSeq {
			for ms <= g.lastMS {
				time.Sleep(100 * time.Microsecond)
				ms = g.now().Sub(Epoch).Milliseconds()
			}
			g.seq = 0
		}
	} else {
		g.seq = 0
	}
	g.lastMS = ms
	return ms<<(nodeBits+seqBits) | g.node<<seqBits | g.seq
}

// NextString returns Next rendered in decimal.
func (g *Generator) NextString() string { return strconv.FormatInt(g.Next(), 10) }

// Time returns the creation time encoded in id.
func Time(id int64) time.Time {
	return Epoch.Add(time.Duration(id>>(nodeBits+seqBits)) * time.Millisecond)
}

// Parse reads an id as NextString renders it: a positive decimal int64 without sign or
// leading zeros. It returns the id and the creation time it encodes; ok is false for any
// other string, which therefore names nothing this package issued.
func Parse(s string) (id int64, created time.Time, ok bool) {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return 0, time.Time{}, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, time.Time{}, false
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, time.Time{}, false
	}
	return id, Time(id), true
}
