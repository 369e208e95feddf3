package testregistry

import (
	"net/http"
	"strings"
	"sync"
)

// BlobBytes counts the bytes a registry sends for each blob (GET
// .../blobs/sha256:...), for tests and benchmarks that check what a client
// fetched: pass its Middleware to WithMiddleware (or wrap a handler with
// it). It is safe for concurrent use.
type BlobBytes struct {
	mu    sync.Mutex
	blobs map[string]int64
}

// Middleware counts the response bytes of blob GETs and passes every
// request on to next.
func (c *BlobBytes) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := strings.Index(r.URL.Path, "/blobs/sha256:")
		if i < 0 || r.Method != http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		cw := &countingWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r)
		c.mu.Lock()
		if c.blobs == nil {
			c.blobs = map[string]int64{}
		}
		c.blobs[r.URL.Path[i+len("/blobs/"):]] += cw.n
		c.mu.Unlock()
	})
}

// Get returns the bytes sent so far for the blob with digest dgst
// ("sha256:...").
func (c *BlobBytes) Get(dgst string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.blobs[dgst]
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Flush passes flushes on, for handlers that stream.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}
