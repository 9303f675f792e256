package scenario

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestMovingSchedule(t *testing.T) {
	names := []string{"n1", "n2", "n3"}
	hold := 4 * time.Second
	a, err := movingSchedule(rand.New(rand.NewPCG(7, 1)), names, 50, hold)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := movingSchedule(rand.New(rand.NewPCG(7, 1)), names, 50, hold)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave two schedules")
	}
	c, _ := movingSchedule(rand.New(rand.NewPCG(8, 1)), names, 50, hold)
	if slices.Equal(a, c) {
		t.Error("two seeds gave the same 50-step schedule")
	}
	links, dirs := map[[2]string]bool{}, map[[2]string]bool{}
	for i, s := range a {
		if s.hold < 8*time.Second || s.hold > 12*time.Second {
			t.Errorf("step %d holds %v, want 8-12s", i, s.hold)
		}
		if s.from == s.to || !slices.Contains(names, s.from) || !slices.Contains(names, s.to) {
			t.Errorf("step %d cuts %s-%s", i, s.from, s.to)
		}
		if i > 0 && pairOf(s.from, s.to) == pairOf(a[i-1].from, a[i-1].to) {
			t.Errorf("steps %d and %d cut the same link %s-%s", i-1, i, s.from, s.to)
		}
		links[pairOf(s.from, s.to)] = true
		dirs[[2]string{s.from, s.to}] = true
	}
	if len(links) != 3 || len(dirs) < 5 {
		t.Errorf("50 steps used %d links and %d directions; want every link and most directions", len(links), len(dirs))
	}
	if _, err := movingSchedule(rand.New(rand.NewPCG(1, 1)), []string{"n1", "n2"}, 3, hold); err == nil {
		t.Error("a moving cut over one link accepted")
	}
}

func pairOf(a, b string) [2]string {
	if a > b {
		a, b = b, a
	}
	return [2]string{a, b}
}

func TestLiteratureTopologies(t *testing.T) {
	if got := star("n3", []string{"n1", "n2", "n3", "n4"}); !slices.Equal(got, [][2]string{{"n3", "n1"}, {"n3", "n2"}, {"n3", "n4"}}) {
		t.Errorf("star = %v", got)
	}
	chain := []string{"n4", "n1", "n5", "n2", "n3"}
	if got := path(chain); !slices.Equal(got, [][2]string{{"n4", "n1"}, {"n1", "n5"}, {"n5", "n2"}, {"n2", "n3"}}) {
		t.Errorf("path = %v", got)
	}
	if joinChain(chain) != "n4 - n1 - n5 - n2 - n3" {
		t.Errorf("joinChain = %q", joinChain(chain))
	}
}
