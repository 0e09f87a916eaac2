package live_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/groupbuy/groupbuy/pkg/live"
	"github.com/groupbuy/groupbuy/pkg/live/livetest"
)

// inbox is what a catch-up reads, newest first.
var inbox = []live.Message{
	{ID: "c", Type: "order.paid", Data: []byte(`{"n":3}`)},
	{ID: "b", Type: "order.paid", Data: []byte(`{"n":2}`)},
	{ID: "a", Type: "order.paid", Data: []byte(`{"n":1}`)},
}

// server streams topic "t" of hub, catching up from inbox on Last-Event-ID, the way an app
// handler uses the package: subscribe first, then read the catch-up, then Serve.
func server(t *testing.T, hub *live.Hub) *httptest.Server {
	t.Helper()
	sse := live.SSE{Heartbeat: 50 * time.Millisecond}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sub := hub.Subscribe("t")
		defer sub.Close()
		var first []live.Message
		if last := live.LastEventID(r); last != "" {
			first = live.Since(inbox, last)
		}
		sse.Serve(w, r, sub, first)
	}))
	// Cleanups run last-in first-out: the hub closes first, ending open streams, so closing
	// the server does not wait for them.
	t.Cleanup(srv.Close)
	t.Cleanup(hub.Close)
	return srv
}

// open starts a stream and returns once the connected comment arrived, i.e. once the handler
// is subscribed.
func open(t *testing.T, ctx context.Context, srv *httptest.Server, lastID string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	r := bufio.NewReader(resp.Body)
	f, err := livetest.ReadFrame(r)
	if err != nil || len(f.Comments) == 0 || f.Comments[0] != "connected" {
		t.Fatalf("first frame = %+v, %v; want the connected comment", f, err)
	}
	return r
}

func nextEvent(t *testing.T, r *bufio.Reader) livetest.Frame {
	t.Helper()
	for {
		f, err := livetest.ReadFrame(r)
		if err != nil {
			t.Fatalf("read stream: %v", err)
		}
		if f.Event != "" {
			return f
		}
	}
}

func TestServeCatchUpThenLive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		lastID string
		want   []string
	}{
		{name: "fresh stream gets the live events", want: []string{"c", "d"}},
		{name: "catch-up after a, live c skipped as already sent", lastID: "a", want: []string{"b", "c", "d"}},
		{name: "up to date: live c is the client's last event", lastID: "c", want: []string{"d"}},
		{name: "unknown id replays the whole inbox", lastID: "zz", want: []string{"a", "b", "c", "d"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			hub := live.NewHub(8)
			srv := server(t, hub)
			r := open(t, ctx, srv, tt.lastID)

			hub.Publish("t", inbox[0]) // c: arrives live while also in the catch-up
			hub.Publish("t", live.Message{ID: "d", Type: "order.confirmed", Data: []byte(`{"n":4}`)})

			var got []string
			for range tt.want {
				got = append(got, nextEvent(t, r).ID)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFrameFormat(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub := live.NewHub(8)
	srv := server(t, hub)
	r := open(t, ctx, srv, "")

	// Line breaks in an id or type could forge a frame; data lines are split, not cut.
	hub.Publish("t", live.Message{ID: "x\n\nevent: forged", Type: "order.paid\r", Data: []byte("{\"a\":1,\r\n\"b\":2}")})
	got := nextEvent(t, r)
	want := livetest.Frame{ID: "xevent: forged", Event: "order.paid", Data: "{\"a\":1,\n\"b\":2}"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("frame (-want +got):\n%s", diff)
	}
}

func TestHeartbeatAndDisconnect(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub := live.NewHub(8)
	srv := server(t, hub)

	sctx, scancel := context.WithCancel(ctx)
	r := open(t, sctx, srv, "")
	f, err := livetest.ReadFrame(r)
	if err != nil || len(f.Comments) != 1 || f.Comments[0] != "heartbeat" {
		t.Fatalf("frame = %+v, %v; want a heartbeat comment", f, err)
	}
	if got := hub.Clients("t"); got != 1 {
		t.Fatalf("clients = %d, want 1", got)
	}

	scancel() // the client goes away
	for hub.Clients("t") != 0 {
		select {
		case <-ctx.Done():
			t.Fatal("the stream's subscription outlived its client")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func TestStreamEndsWhenHubCloses(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub := live.NewHub(8)
	srv := server(t, hub)

	r := open(t, ctx, srv, "")
	hub.Close()
	for {
		_, err := livetest.ReadFrame(r)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatalf("read: %v, want EOF", err)
		}
	}
}

func TestSince(t *testing.T) {
	t.Parallel()
	ids := func(ms []live.Message) []string {
		out := []string{}
		for _, m := range ms {
			out = append(out, m.ID)
		}
		return out
	}
	tests := []struct {
		name  string
		items []live.Message
		last  string
		want  []string
	}{
		{name: "oldest first after last", items: inbox, last: "a", want: []string{"b", "c"}},
		{name: "newest seen", items: inbox, last: "c", want: []string{}},
		{name: "trimmed id yields everything", items: inbox, last: "gone", want: []string{"a", "b", "c"}},
		{name: "empty inbox", items: nil, last: "a", want: []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if diff := cmp.Diff(tt.want, ids(live.Since(tt.items, tt.last))); diff != "" {
				t.Errorf("Since (-want +got):\n%s", diff)
			}
		})
	}
}
