// Package livetest reads server-sent event streams in tests: the client side of live.SSE.
package livetest

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
)

// Frame is one server-sent event, or a comment-only frame (connected, heartbeat).
type Frame struct {
	ID, Event, Data string
	Comments        []string
}

// ReadFrame reads the next frame; lines of a frame end at an empty line. "retry:" lines are
// skipped.
func ReadFrame(r *bufio.Reader) (Frame, error) {
	var f Frame
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line != "" {
				err = io.ErrUnexpectedEOF
			}
			return f, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if f.ID != "" || f.Event != "" || f.Data != "" || len(f.Comments) > 0 {
				return f, nil
			}
		case strings.HasPrefix(line, ":"):
			f.Comments = append(f.Comments, strings.TrimSpace(line[1:]))
		case strings.HasPrefix(line, "id: "):
			f.ID = strings.TrimPrefix(line, "id: ")
		case strings.HasPrefix(line, "event: "):
			f.Event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			if f.Data != "" {
				f.Data += "\n"
			}
			f.Data += strings.TrimPrefix(line, "data: ")
		}
	}
}

// Events reads r in a goroutine and sends every event frame (comments skipped) on the
// returned channel, which is closed when the stream ends or ctx is done. The caller selects
// on it with a timeout, so a silent stream never hangs a test.
func Events(ctx context.Context, r io.Reader) <-chan Frame {
	out := make(chan Frame, 64)
	go func() {
		defer close(out)
		br := bufio.NewReader(r)
		for {
			f, err := ReadFrame(br)
			if err != nil {
				return
			}
			if f.Event == "" {
				continue
			}
			select {
			case out <- f:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}
