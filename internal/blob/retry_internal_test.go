package blob

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	p := RetryPolicy{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second}.withDefaults()
	if p.Attempts != DefaultRetryPolicy.Attempts || p.Stall != DefaultRetryPolicy.Stall {
		t.Errorf("withDefaults = %+v", p)
	}
	tests := []struct {
		n        int
		asked    time.Duration
		min, max time.Duration
	}{
		{1, 0, 75 * time.Millisecond, 100 * time.Millisecond},
		{2, 0, 150 * time.Millisecond, 200 * time.Millisecond},
		{4, 0, 600 * time.Millisecond, 800 * time.Millisecond},
		{10, 0, 750 * time.Millisecond, time.Second},
		{1, 500 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond},
		{1, time.Hour, time.Second, time.Second}, // Retry-After is capped
	}
	for _, tt := range tests {
		for range 50 {
			if d := p.backoff(tt.n, tt.asked); d < tt.min || d > tt.max {
				t.Fatalf("backoff(%d, %s) = %s, want [%s, %s]", tt.n, tt.asked, d, tt.min, tt.max)
			}
		}
	}
	for _, tt := range []struct {
		code       int
		redirected bool
		want       bool
	}{{503, false, true}, {429, false, true}, {500, true, true}, {401, false, true}, {401, true, false},
		{403, false, false}, {403, true, true}, {404, false, false}, {400, false, false}} {
		if got := retryStatus(tt.code, tt.redirected); got != tt.want {
			t.Errorf("retryStatus(%d, redirected %t) = %t", tt.code, tt.redirected, got)
		}
	}
}
