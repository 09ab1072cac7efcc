package pushsim

import (
	"testing"
	"time"
)

func TestPushWindowGrowsOnSuccessAndHalvesOnFailure(t *testing.T) {
	t.Parallel()
	p := New(Config{Name: "t", Path: "/p", Subscription: "s", InFlight: 32, Deadline: time.Minute, MinBackoff: time.Second, MaxBackoff: 10 * time.Second})
	for range 100 {
		p.adjust(true)
	}
	if p.window != 32 {
		t.Fatalf("window %v after successes, want the maximum 32", p.window)
	}
	p.adjust(false)
	p.adjust(false)
	if p.window != 8 {
		t.Fatalf("window %v after two failures, want 8", p.window)
	}
	for range 10 {
		p.adjust(false)
	}
	if p.window != 1 {
		t.Fatalf("window %v, want at least 1", p.window)
	}
	fixed := New(Config{Name: "t", Path: "/p", Subscription: "s", InFlight: 32, Fixed: true, Deadline: time.Minute, MinBackoff: time.Second, MaxBackoff: 10 * time.Second})
	fixed.adjust(false)
	if fixed.window != 32 {
		t.Fatalf("fixed window moved to %v", fixed.window)
	}
}
