package ratelog

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := New(10 * time.Second)
	if ok, _ := l.Allow("a", t0); !ok {
		t.Fatal("first line suppressed")
	}
	for range 5 {
		if ok, _ := l.Allow("a", t0.Add(time.Second)); ok {
			t.Fatal("line within the interval allowed")
		}
	}
	if ok, _ := l.Allow("b", t0.Add(time.Second)); !ok {
		t.Fatal("another key suppressed")
	}
	if ok, n := l.Allow("a", t0.Add(11*time.Second)); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d suppressed; want true, 5", ok, n)
	}
}

func TestLimiterBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := New(time.Second)
	for i := range 2 * MaxKeys {
		l.Allow(fmt.Sprint(i), t0)
	}
	if len(l.keys) > MaxKeys {
		t.Fatalf("%d keys tracked, bound %d", len(l.keys), MaxKeys)
	}
	if ok, _ := l.Allow("late", t0); ok {
		t.Fatal("a new key was let through while the limiter was full of fresh keys")
	}
	// Once the old keys are stale they make room.
	if ok, _ := l.Allow("later", t0.Add(6*time.Second)); !ok {
		t.Fatal("stale keys were not dropped to make room")
	}
	l.Prune(t0.Add(7 * time.Second))
	if len(l.keys) != 1 {
		t.Fatalf("%d keys after pruning, want 1", len(l.keys))
	}
}
