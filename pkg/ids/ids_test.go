package ids

import (
	"strconv"
	"sync"
	"testing"
	"time"
)

// steppingClock returns at for the first n calls and at+step afterwards, so a test can freeze
// the clock inside one millisecond and then let it move on.
type steppingClock struct {
	mu    sync.Mutex
	at    time.Time
	n     int
	step  time.Duration
	calls int
}

func (c *steppingClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.calls > c.n {
		return c.at.Add(c.step)
	}
	return c.at
}

func TestNewNodeRange(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		node    int
		wantErr bool
	}{
		{"lowest", 0, false},
		{"highest", 1023, false},
		{"negative", -1, true},
		{"too high", 1024, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g, err := New(tt.node)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("New(%d) error = %v, want error %t", tt.node, err, tt.wantErr)
			}
			if err == nil && g == nil {
				t.Fatalf("New(%d) returned a nil generator", tt.node)
			}
		})
	}
}

func TestNextLayout(t *testing.T) {
	t.Parallel()
	at := Epoch.Add(90 * 24 * time.Hour).Add(123 * time.Millisecond)
	g, err := New(517)
	if err != nil {
		t.Fatal(err)
	}
	g.now = func() time.Time { return at }

	first, second := g.Next(), g.Next()

	if got, want := Time(first), at; !got.Equal(want) {
		t.Errorf("Time(first) = %v, want %v", got, want)
	}
	if got, want := (first>>seqBits)&maxNode, int64(517); got != want {
		t.Errorf("node bits = %d, want %d", got, want)
	}
	if got, want := first&maxSeq, int64(0); got != want {
		t.Errorf("first sequence = %d, want %d", got, want)
	}
	if got, want := second-first, int64(1); got != want {
		t.Errorf("second-first = %d, want %d (same millisecond, next sequence)", got, want)
	}
}

func TestNextSequenceOverflowWaitsForNextMillisecond(t *testing.T) {
	t.Parallel()
	at := Epoch.Add(time.Hour)
	// maxSeq+1 ids fit in the frozen millisecond; the next call overflows and must wait for
	// the clock, which moves on from the call after that.
	clock := &steppingClock{at: at, n: maxSeq + 2, step: time.Millisecond}
	g, err := New(1)
	if err != nil {
		t.Fatal(err)
	}
	g.now = clock.now

	var last int64
	for i := range maxSeq + 1 {
		id := g.Next()
		if id <= last {
			t.Fatalf("id %d = %d, not above previous %d", i, id, last)
		}
		last = id
	}
	id := g.Next()

	if id <= last {
		t.Errorf("overflow id %d not above previous %d", id, last)
	}
	if got, want := Time(id), at.Add(time.Millisecond); !got.Equal(want) {
		t.Errorf("Time(overflow id) = %v, want %v", got, want)
	}
	if got := id & maxSeq; got != 0 {
		t.Errorf("overflow id sequence = %d, want 0", got)
	}
}

func TestNextClockStepsBack(t *testing.T) {
	t.Parallel()
	at := Epoch.Add(time.Hour)
	times := []time.Time{at, at.Add(-time.Second), at.Add(time.Millisecond)}
	g, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	g.now = func() time.Time { t := times[i]; i++; return t }

	a, b, c := g.Next(), g.Next(), g.Next()

	if !(a < b && b < c) {
		t.Errorf("ids %d, %d, %d are not increasing across a clock step back", a, b, c)
	}
	if got, want := Time(b), at; !got.Equal(want) {
		t.Errorf("Time(id issued after the step back) = %v, want %v (held at the last millisecond)", got, want)
	}
}

func TestNextConcurrentUnique(t *testing.T) {
	t.Parallel()
	const workers, perWorker = 8, 2000
	g, err := New(3)
	if err != nil {
		t.Fatal(err)
	}
	results := make([][]int64, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			out := make([]int64, 0, perWorker)
			for range perWorker {
				out = append(out, g.Next())
			}
			results[w] = out
		})
	}
	wg.Wait()

	seen := make(map[int64]bool, workers*perWorker)
	for w, out := range results {
		for i, id := range out {
			if seen[id] {
				t.Fatalf("duplicate id %d", id)
			}
			seen[id] = true
			// Each worker sees its own ids strictly increasing.
			if i > 0 && id <= out[i-1] {
				t.Errorf("worker %d: id %d not above previous %d", w, id, out[i-1])
			}
		}
	}
}

func TestNextString(t *testing.T) {
	t.Parallel()
	g, err := New(0)
	if err != nil {
		t.Fatal(err)
	}
	g.now = func() time.Time { return Epoch.Add(time.Millisecond) }

	// 1ms after Epoch, node 0, sequence 0.
	if got, want := g.NextString(), "4194304"; got != want {
		t.Errorf("NextString() = %q, want %q", got, want)
	}
}

func TestParse(t *testing.T) {
	g, err := New(7)
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Millisecond)
	s := g.NextString()
	id, created, ok := Parse(s)
	if !ok || strconv.FormatInt(id, 10) != s {
		t.Fatalf("Parse(%q) = %d, %v", s, id, ok)
	}
	if created.Before(before.Truncate(time.Millisecond)) || created.After(time.Now()) {
		t.Errorf("Parse(%q) created %v, want about %v", s, created, before)
	}
	for _, bad := range []string{"", "0", "007", "-5", "+5", "12a", "1.5", " 12", "9223372036854775808", "12345678901234567890123456789"} {
		if _, _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) ok, want refused", bad)
		}
	}
}
