package disk_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/lazydisk/lazydisk/disk"
	"github.com/lazydisk/lazydisk/internal/testregistry"
	"github.com/lazydisk/lazydisk/toc"
)

// testRetry retries quickly, so that fault tests take little time, and
// gives up on a request that sends nothing for half a second.
var testRetry = disk.RetryPolicy{Attempts: 4, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Stall: 500 * time.Millisecond}

// TestFaults reads a disk sequentially through a fault proxy in front of
// the registry, whose tokens expire after a second, while it fails some
// requests in every way a registry or CDN does. The read must return the
// disk's bytes with a bounded number of retries.
func TestFaults(t *testing.T) {
	t.Parallel()
	data := diskOnce()
	faults := []testregistry.Fault{
		testregistry.Unavailable, testregistry.Unavailable, testregistry.Unavailable, testregistry.Pass,
		testregistry.Reset, testregistry.Pass, testregistry.Short, testregistry.Pass,
		testregistry.IgnoreRange, testregistry.Pass, testregistry.TooMany, testregistry.Pass,
		testregistry.Stall, testregistry.Pass,
	}
	for _, redirect := range []bool{false, true} {
		name := "registry"
		if redirect {
			name = "redirect"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fp := &testregistry.Faults{TokenTTL: time.Second}
			if redirect {
				fp.RedirectTTL = time.Minute
			}
			reg := testregistry.Start(t, testregistry.WithMiddleware(fp.Middleware))
			ref, _ := pushDisk(t, reg, "faults/"+name, toc.FormatEStargz, data, nil)
			f := open(t, ref, disk.WithCacheSize(0), disk.WithRetry(testRetry))
			script := faults
			if redirect {
				script = append([]testregistry.Fault{testregistry.Expired, testregistry.Pass, testregistry.Expired, testregistry.Pass}, faults...)
			}
			fp.Script(script...)
			// A long sequential read: 64 KiB at a time for about 2.5 s, so
			// that tokens expire during it.
			start := time.Now()
			const step = 64 << 10
			p := make([]byte, step)
			pause := 2500 * time.Millisecond / time.Duration(len(data)/step)
			for off := int64(0); off < int64(len(data)); off += step {
				n, err := f.ReadAt(p, off)
				if (err != nil && n != len(data)-int(off)) || !bytes.Equal(p[:n], data[off:off+int64(n)]) {
					t.Fatalf("ReadAt(%d) = %d, %v; or the bytes differ", off, n, err)
				}
				time.Sleep(pause)
			}
			st := f.Stats()
			issued, expired := fp.Tokens()
			t.Logf("%s: %+v; %d tokens issued, %d requests with an expired one", time.Since(start).Round(time.Millisecond), st, issued, expired)
			for _, fault := range script {
				if fault != testregistry.Pass && fp.Count(fault) == 0 {
					t.Errorf("fault %q was never served", fault)
				}
			}
			if issued < 2 || expired < 1 {
				t.Errorf("%d tokens issued and %d expired tokens used: the read did not outlive a token", issued, expired)
			}
			// Each failure costs one retry: no more than the faults scripted.
			var want int64
			for _, fault := range script {
				if fault != testregistry.Pass && fault != testregistry.IgnoreRange {
					want++
				}
			}
			if st.Retries != want {
				t.Errorf("%d retries, want %d (one per scripted failure)", st.Retries, want)
			}
			if st.RangeIgnored != 1 {
				t.Errorf("RangeIgnored = %d, want 1", st.RangeIgnored)
			}
		})
	}
}

// TestFaultsPersist checks that reads fail cleanly, after a bounded number
// of attempts and in bounded time, when the faults do not pass.
func TestFaultsPersist(t *testing.T) {
	t.Parallel()
	data := diskOnce()[:1<<20]
	tests := []struct {
		fault    testregistry.Fault
		redirect bool
		wantMsg  string
	}{
		{testregistry.Unavailable, false, "503 Service Unavailable"},
		{testregistry.Reset, false, "connection reset"},
		{testregistry.Short, false, "broke off"},
		{testregistry.Stall, false, "no data received for 500ms"},
		{testregistry.Expired, true, "403 Forbidden"},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault), func(t *testing.T) {
			t.Parallel()
			fp := &testregistry.Faults{}
			if tt.redirect {
				fp.RedirectTTL = time.Minute
			}
			reg := testregistry.Start(t, testregistry.WithMiddleware(fp.Middleware))
			ref, _ := pushDisk(t, reg, "persist/"+string(tt.fault), toc.FormatZstdChunked, data, nil)
			f := open(t, ref, disk.WithRetry(testRetry))
			fp.Always(tt.fault)
			before := f.Stats()
			start := time.Now()
			n, err := f.ReadAt(make([]byte, 4096), 300_000)
			took := time.Since(start)
			if err == nil || n != 0 {
				t.Fatalf("ReadAt = %d, %v; want an error", n, err)
			}
			t.Logf("after %s: %v", took.Round(time.Millisecond), err)
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), "gave up after 4 attempts") {
				t.Errorf("error %q does not say %q and that it gave up after 4 attempts", err, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "\n") || strings.Contains(err.Error(), "signature=") || strings.Contains(err.Error(), "secret") {
				t.Errorf("error %q is not one line, or shows the signed URL", err)
			}
			if got := f.Stats().Requests - before.Requests; got != 4 {
				t.Errorf("%d requests, want 4 attempts", got)
			}
			if took > 5*time.Second {
				t.Errorf("failing took %s", took)
			}
			// Once the registry is well again, so is the File.
			fp.Always(testregistry.Pass)
			checkRead(t, f, data, 300_000, 4096)
		})
	}
}
