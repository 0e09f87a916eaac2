package readcache

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/groupbuy/groupbuy/pkg/problem"
)

// Serve answers a public read of the product or deal id from the cache, with HTTP caching
// as clients and CDNs expect: an ETag, "Cache-Control: public, max-age=N" (N is how long the
// gateway itself may serve the document: the stock TTL for deals), and 304 Not Modified when
// If-None-Match names the current validator. The answer is the same for every caller (these
// reads depend on nothing in the request but the id), so it varies on nothing and is public
// even when the request carried a token. Not-found answers carry no-cache: a deal created a
// moment later must be readable at once.
func (c *Cache) Serve(w http.ResponseWriter, r *http.Request, kind Kind, id string) {
	d, err := c.Get(r.Context(), kind, id)
	if err != nil {
		problem.Write(w, r, err)
		return
	}
	if d.Missing {
		w.Header().Set("Cache-Control", "no-cache")
		problem.Write(w, r, problem.New(problem.CodeNotFound, kind+" not found"))
		return
	}
	h := w.Header()
	h.Set("ETag", d.ETag)
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(int(d.MaxAge/time.Second)))
	if NoneMatch(r.Header.Get("If-None-Match"), d.ETag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(d.Body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(d.Body)
}

// NoneMatch reports whether an If-None-Match header value matches etag, by the weak
// comparison RFC 9110 §13.1.2 prescribes for it ("*" matches any current representation).
func NoneMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	want := strings.TrimPrefix(etag, "W/")
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == want {
			return true
		}
	}
	return false
}
