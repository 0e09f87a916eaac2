package httpapi

import (
	"net/http"
	"sync"
	"time"

	"github.com/groupbuy/groupbuy/apps/gateway/internal/ratelimit"
	"github.com/groupbuy/groupbuy/pkg/problem"
)

// StreamLimits bound the live streams (SSE) this replica holds open: each is a goroutine, a
// connection and a hub buffer for as long as the client likes, so without a bound one client
// could hold them all. Zero means the default.
type StreamLimits struct {
	PerUser int // streams one signed-in user may hold (default 5)
	PerIP   int // streams one client address may hold, signed in or not (default 50)
	Total   int // streams this replica holds (default 10,000)
}

func (l StreamLimits) withDefaults() StreamLimits {
	if l.PerUser <= 0 {
		l.PerUser = 5
	}
	if l.PerIP <= 0 {
		l.PerIP = 50
	}
	if l.Total <= 0 {
		l.Total = 10_000
	}
	return l
}

// streamSlots counts the open streams.
type streamSlots struct {
	mu     sync.Mutex
	lim    StreamLimits
	byUser map[string]int
	byIP   map[string]int
	total  int
}

// errTooManyStreams answers a stream over a limit: the client should close one or retry later.
var errTooManyStreams = &problem.Error{Code: problem.CodeRateLimited, Detail: "too many open event streams", RetryAfter: 5 * time.Second}

// acquire takes a slot for a stream of user ("" for an anonymous one) from ip, or fails
// when a limit is reached; release gives it back.
func (s *streamSlots) acquire(user, ip string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.lim.Total || s.byIP[ip] >= s.lim.PerIP || (user != "" && s.byUser[user] >= s.lim.PerUser) {
		return nil, errTooManyStreams
	}
	s.total++
	s.byIP[ip]++
	if user != "" {
		s.byUser[user]++
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.total--
			if s.byIP[ip]--; s.byIP[ip] == 0 {
				delete(s.byIP, ip)
			}
			if user != "" {
				if s.byUser[user]--; s.byUser[user] == 0 {
					delete(s.byUser, user)
				}
			}
		})
	}, nil
}

// clientIP is the address a request's stream counts against.
func (a *API) clientIP(r *http.Request) string {
	if a.ClientIP != nil {
		return a.ClientIP(r)
	}
	return ratelimit.ClientIP(r, nil) // no trusted proxy: the connection's peer
}

// openStream takes a stream slot for the request, or answers 429 and returns false.
func (a *API) openStream(w http.ResponseWriter, r *http.Request, user string) (release func(), ok bool) {
	a.slotsOnce.Do(func() {
		a.slots.lim = a.Streams.withDefaults()
		a.slots.byUser, a.slots.byIP = map[string]int{}, map[string]int{}
	})
	release, err := a.slots.acquire(user, a.clientIP(r))
	if err != nil {
		problem.Write(w, r, err)
		return nil, false
	}
	return release, true
}
