package testregistry

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault is what Faults does to one blob GET.
type Fault string

const (
	// Pass lets the request through.
	Pass Fault = ""
	// Unavailable answers 503 with Retry-After: 0.
	Unavailable Fault = "503"
	// TooMany answers 429.
	TooMany Fault = "429"
	// Reset sends the answer's header and half its body, then resets the
	// connection (TCP RST).
	Reset Fault = "reset"
	// Short sends the answer's header and half its body, then closes the
	// connection cleanly: the body ends early.
	Short Fault = "short"
	// IgnoreRange drops the Range header: the registry answers 200 with the
	// whole blob.
	IgnoreRange Fault = "ignore-range"
	// Stall accepts the request and sends nothing until the client hangs up
	// (or 30 s pass).
	Stall Fault = "stall"
	// Expired, with RedirectTTL set, redirects to a signed URL that has
	// already expired, so the storage host answers 403.
	Expired Fault = "expired"
	// BadRequest, Forbidden, NotFound and Gone answer 400, 403, 404 and
	// 410: failures that asking again does not change.
	BadRequest Fault = "400"
	Forbidden  Fault = "403"
	NotFound   Fault = "404"
	Gone       Fault = "410"
)

// Faults is a scripted fault proxy for a registry started with
// WithMiddleware(f.Middleware). Each GET of a blob takes the next fault of
// the script, or the standing fault once the script is used up. It can also
// demand bearer tokens that expire, as registries' token servers issue them,
// and redirect blob GETs to signed URLs on another host name that expire,
// as registries backed by object storage do. Its methods may be called while
// requests are served.
type Faults struct {
	// TokenTTL, when set, makes every /v2/ request need a bearer token from
	// the /token endpoint it announces in its 401 challenge; tokens are issued
	// to anyone and expire after TokenTTL.
	TokenTTL time.Duration
	// RedirectTTL, when set, makes blob GETs answer 307 to a URL signed for
	// RedirectTTL on "localhost" at the same port (another host to clients
	// that came to 127.0.0.1), which answers 403 once it has expired.
	RedirectTTL time.Duration
	// RedirectHost, when set, is the host name the signed URLs point at
	// instead of "localhost": "127.0.0.1" to a client that came to
	// localhost is a redirect to an internal address of another host.
	RedirectHost string

	mu       sync.Mutex
	script   []Fault
	standing Fault
	counts   map[Fault]int
	tokens   map[string]time.Time
	issued   int
	expired  int
}

// Script queues faults for the next blob GETs, after those already queued.
func (f *Faults) Script(faults ...Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script = append(f.script, faults...)
}

// Always sets the fault of blob GETs once the script is used up.
func (f *Faults) Always(fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.standing = fault
}

// Count returns how many blob GETs got fault (Pass included).
func (f *Faults) Count(fault Fault) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[fault]
}

// Tokens returns how many tokens were issued, and how many requests came
// with one that had expired.
func (f *Faults) Tokens() (issued, expired int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issued, f.expired
}

func (f *Faults) next() Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	fault := f.standing
	if len(f.script) > 0 {
		fault, f.script = f.script[0], f.script[1:]
	}
	if f.counts == nil {
		f.counts = map[Fault]int{}
	}
	f.counts[fault]++
	return fault
}

// storagePrefix is the path of the signed URLs blob GETs redirect to.
const storagePrefix = "/_storage"

// Middleware is the proxy, to pass to WithMiddleware.
func (f *Faults) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			f.issue(w)
			return
		case strings.HasPrefix(r.URL.Path, storagePrefix+"/"):
			f.storage(w, r, next)
			return
		case strings.HasPrefix(r.URL.Path, "/v2/") && f.TokenTTL > 0 && !f.authorized(r):
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="testregistry"`, r.Host))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			next.ServeHTTP(w, r)
			return
		}
		fault := f.next()
		if f.RedirectTTL > 0 {
			_, port, _ := net.SplitHostPort(r.Host)
			exp := time.Now().Add(f.RedirectTTL)
			if fault == Expired {
				exp = time.Now().Add(-time.Second)
			}
			host := "localhost"
			if f.RedirectHost != "" {
				host = f.RedirectHost
			}
			u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: storagePrefix + r.URL.Path,
				RawQuery: url.Values{"expires": {strconv.FormatInt(exp.UnixNano(), 10)}, "fault": {string(fault)}, "signature": {"secret"}}.Encode()}
			http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
			return
		}
		f.serveBlob(w, r, next, fault)
	})
}

// storage serves a signed URL: 403 once it expired, else the blob, with
// the fault the registry took for the request it redirected.
func (f *Faults) storage(w http.ResponseWriter, r *http.Request, next http.Handler) {
	exp, err := strconv.ParseInt(r.URL.Query().Get("expires"), 10, 64)
	if err != nil || time.Now().UnixNano() > exp {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"))
		return
	}
	r2 := r.Clone(r.Context())
	r2.URL.Path = strings.TrimPrefix(r.URL.Path, storagePrefix)
	r2.URL.RawQuery = ""
	r2.RequestURI = r2.URL.RequestURI()
	f.serveBlob(w, r2, next, Fault(r.URL.Query().Get("fault")))
}

// serveBlob answers a blob GET with fault.
func (f *Faults) serveBlob(w http.ResponseWriter, r *http.Request, next http.Handler, fault Fault) {
	switch fault {
	case Unavailable:
		w.Header().Set("Retry-After", "0")
		http.Error(w, "scripted 503", http.StatusServiceUnavailable)
	case TooMany:
		http.Error(w, "scripted 429", http.StatusTooManyRequests)
	case BadRequest, Forbidden, NotFound, Gone:
		code, _ := strconv.Atoi(string(fault))
		http.Error(w, "scripted "+string(fault), code)
	case IgnoreRange:
		r.Header.Del("Range")
		next.ServeHTTP(w, r)
	case Reset, Short:
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		body := rec.Body.Bytes()
		fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
		rec.Header().Set("Content-Length", strconv.Itoa(len(body)))
		rec.Header().Write(buf)
		buf.WriteString("\r\n")
		buf.Write(body[:len(body)/2])
		buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok && fault == Reset {
			tc.SetLinger(0) // close sends RST
		}
		conn.Close()
	case Stall:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		var b [1]byte
		conn.Read(b[:]) // until the client hangs up
		conn.Close()
	default:
		next.ServeHTTP(w, r)
	}
}

func (f *Faults) issue(w http.ResponseWriter) {
	var b [16]byte
	rand.Read(b[:])
	tok := hex.EncodeToString(b[:])
	f.mu.Lock()
	if f.tokens == nil {
		f.tokens = map[string]time.Time{}
	}
	f.tokens[tok] = time.Now().Add(f.TokenTTL)
	f.issued++
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": tok, "expires_in": int(f.TokenTTL.Seconds()), "issued_at": time.Now().Format(time.RFC3339)})
}

func (f *Faults) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	exp, ok := f.tokens[tok]
	if ok && time.Now().After(exp) {
		f.expired++
		return false
	}
	return ok
}
