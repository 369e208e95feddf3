package blob_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/image"
	"github.com/lazydisk/lazydisk/internal/blob"
	"github.com/lazydisk/lazydisk/internal/testregistry"
)

// TestPermanentErrors checks, through the fault proxy, that failures
// asking again cannot change are not retried: a redirect refused because it
// points at an internal address, and 4xx answers other than 401, 408 and
// 429. Those three are retried.
func TestPermanentErrors(t *testing.T) {
	t.Parallel()
	data := randomBytes(10_000, 22)
	retry := blob.RetryPolicy{Attempts: 5, MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	for _, tt := range []struct {
		name      string
		fault     testregistry.Fault
		redirect  bool
		retried   bool
		wantMsg   string
		wantError error
	}{
		{name: "refused redirect", redirect: true, wantMsg: "refusing the redirect", wantError: image.ErrRedirectRefused},
		{name: "400", fault: testregistry.BadRequest, wantMsg: "400"},
		{name: "403", fault: testregistry.Forbidden, wantError: image.ErrUnauthorized},
		{name: "404", fault: testregistry.NotFound, wantError: image.ErrNotFound},
		{name: "410", fault: testregistry.Gone, wantMsg: "410"},
		{name: "429", fault: testregistry.TooMany, retried: true},
		{name: "503", fault: testregistry.Unavailable, retried: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fp := &testregistry.Faults{}
			if tt.redirect {
				// Reached as localhost, redirected to 127.0.0.1: an
				// internal address of another host.
				fp.RedirectTTL, fp.RedirectHost = time.Minute, "127.0.0.1"
			}
			reg := testregistry.Start(t, testregistry.WithMiddleware(fp.Middleware))
			_, desc := pushBlob(t, reg, "perm/blob", data)
			ref := mustParse(t, "docker://"+strings.Replace(reg.Host, "127.0.0.1", "localhost", 1)+"/perm/blob:latest")
			if tt.fault != testregistry.Pass {
				fp.Always(tt.fault)
			}
			b, err := blob.Open(t.Context(), ref, desc, anonymous(), blob.WithRetry(retry))
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			_, err = b.ReadAt(make([]byte, 100), 0)
			st := b.Stats()
			switch {
			case err == nil:
				t.Fatalf("ReadAt succeeded; want an error")
			case tt.retried && st.Retries != 4:
				t.Errorf("%v: %d retries, want 4", err, st.Retries)
			case !tt.retried && (st.Retries != 0 || st.Requests != 1):
				t.Errorf("%v: %d requests, %d retries; want 1 request and no retry", err, st.Requests, st.Retries)
			}
			if tt.wantError != nil && !errors.Is(err, tt.wantError) {
				t.Errorf("error %q is not %v", err, tt.wantError)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not say %q", err, tt.wantMsg)
			}
		})
	}
}
