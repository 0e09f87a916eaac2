package live

import (
	"bytes"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Default stream settings.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultWriteTimeout = 10 * time.Second
)

// SSE writes text/event-stream responses. The zero value uses the defaults.
type SSE struct {
	// Heartbeat is the interval of the comment that keeps idle streams (and the proxies in
	// between) alive. Default 15s.
	Heartbeat time.Duration
	// WriteTimeout bounds one write to a client; a client that does not read is cut off after
	// it instead of pinning the handler. Default 10s.
	WriteTimeout time.Duration
}

// LastEventID is the id a reconnecting client saw last: the Last-Event-ID header browsers send
// on reconnect. Empty for a fresh stream.
func LastEventID(r *http.Request) string { return r.Header.Get("Last-Event-ID") }

// Since returns the messages newer than the one with id last, oldest first, from items given
// newest first (an inbox). An id that is no longer there (trimmed from the inbox, or unknown)
// yields every item: better a repeat, which the client can recognise by its id, than a gap.
func Since(items []Message, last string) []Message {
	i := slices.IndexFunc(items, func(m Message) bool { return m.ID == last })
	if i < 0 {
		i = len(items)
	}
	out := make([]Message, 0, i)
	for j := i - 1; j >= 0; j-- {
		out = append(out, items[j])
	}
	return out
}

// Serve writes first (a catch-up), then every message of sub, as text/event-stream until the
// client goes away, the hub drops the client (too slow) or closes (shutdown), or a write fails
// or times out. A message of sub whose id was already sent in first, or is the client's
// Last-Event-ID, is skipped: subscribe before reading the catch-up, so that nothing falls
// between the two, and the overlap is removed here.
func (s SSE) Serve(w http.ResponseWriter, req *http.Request, sub *Subscription, first []Message) {
	beatEvery, wto := s.Heartbeat, s.WriteTimeout
	if beatEvery <= 0 {
		beatEvery = DefaultHeartbeat
	}
	if wto <= 0 {
		wto = DefaultWriteTimeout
	}
	ctx := req.Context()
	rc := http.NewResponseController(w)
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx-style proxies: do not buffer the stream
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	send := func() bool {
		// A deadline per write: a client that stops reading fills its TCP window, and without a
		// deadline the write would block this goroutine for as long as the connection lives.
		if err := rc.SetWriteDeadline(time.Now().Add(wto)); err != nil && !errors.Is(err, http.ErrNotSupported) {
			return false
		}
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}

	// retry: how long a browser waits before reconnecting; the comment gets headers out now.
	buf.WriteString("retry: 3000\n: connected\n\n")
	seen := make(map[string]bool, len(first)+1)
	if last := LastEventID(req); last != "" {
		seen[last] = true
	}
	for _, m := range first {
		seen[m.ID] = true
		writeFrame(&buf, m)
	}
	if !send() {
		return
	}
	beat := time.NewTicker(beatEvery)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-sub.C():
			if !ok {
				return
			}
			if seen[m.ID] {
				continue // already sent in the catch-up
			}
			writeFrame(&buf, m)
		case <-beat.C:
			buf.WriteString(": heartbeat\n\n")
		}
		if !send() {
			return
		}
	}
}

// writeFrame renders one SSE event. Ids and types are validated upstream; line breaks are
// still stripped here, and data is split into data: lines, so no input can forge a frame.
func writeFrame(buf *bytes.Buffer, m Message) {
	oneLine := strings.NewReplacer("\r", "", "\n", "")
	buf.WriteString("id: " + oneLine.Replace(m.ID) + "\n")
	buf.WriteString("event: " + oneLine.Replace(m.Type) + "\n")
	data := bytes.ReplaceAll(bytes.ReplaceAll(m.Data, []byte("\r\n"), []byte("\n")), []byte("\r"), []byte("\n"))
	for _, line := range bytes.Split(data, []byte("\n")) {
		buf.WriteString("data: ")
		buf.Write(line)
		buf.WriteString("\n")
	}
	buf.WriteString("\n")
}
