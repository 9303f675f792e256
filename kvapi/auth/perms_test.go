package auth

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
)

// refAllows is etcd's check written out literally over the individual
// permission intervals (no merging): for one key, some interval holds it;
// for a range, the intervals that overlap it (begin below its end, end
// above its begin), in begin order, form one chain without gaps that starts
// at or below its begin and reaches its end.
func refAllows(perms []span, key, end []byte) bool {
	if len(end) == 0 {
		for _, p := range perms {
			if affineCmp(p.begin, key) <= 0 && affineCmp(key, p.end) < 0 {
				return true
			}
		}
		return false
	}
	if isOpenEnded(end) {
		end = nil
	}
	var hit []span
	for _, p := range perms {
		if affineCmp(p.begin, p.end) >= 0 {
			continue
		}
		if affineCmp(p.begin, end) < 0 && affineCmp(key, p.end) < 0 {
			hit = append(hit, p)
		}
	}
	if len(hit) == 0 {
		return false
	}
	slices.SortFunc(hit, func(a, b span) int {
		if c := affineCmp(a.begin, b.begin); c != 0 {
			return c
		}
		return affineCmp(a.end, b.end)
	})
	minBegin, maxEnd := hit[0].begin, hit[0].end
	for _, p := range hit[1:] {
		if affineCmp(maxEnd, p.begin) < 0 {
			return false
		}
		if affineCmp(p.end, maxEnd) > 0 {
			maxEnd = p.end
		}
	}
	return affineCmp(minBegin, key) <= 0 && affineCmp(maxEnd, end) >= 0
}

func spansOf(perms ...perm) []span {
	out := make([]span, len(perms))
	for i, p := range perms {
		out[i] = p.span()
	}
	return out
}

func TestAllowsTable(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	open := []byte{0}
	perms := spansOf(
		perm{key: b("a")},                  // the key a
		perm{key: b("b"), end: b("d")},     // [b, d)
		perm{key: b("d"), end: b("f")},     // [d, f): touches [b, d)
		perm{key: b("h"), end: b("j")},     // [h, j)
		perm{key: b("x"), end: open},       // x and everything after
		perm{key: b("m"), end: b("m\x00")}, // the key m, as a range
	)
	merged := newSpans(slices.Clone(perms))
	cases := []struct {
		key, end []byte
		want     bool
	}{
		{b("a"), nil, true},
		{b("a\x00"), nil, false},
		{b("aa"), nil, false},
		{b("a"), b("a\x00"), true}, // a range holding only a
		{b("a"), b("b"), false},    // a and what follows it
		{b("b"), nil, true},
		{b("c"), b("e"), true}, // across the touching boundary
		{b("b"), b("f"), true}, // exactly the union
		{b("b"), b("f\x00"), false},
		{b("e"), b("i"), false}, // across a gap
		{b("h"), b("j"), true},
		{b("g"), b("i"), false},
		{b("x"), open, true},
		{b("w"), open, false},
		{b("y"), open, true},
		{b("zzz"), nil, true},
		{b("m"), nil, true},
		{b("m"), b("n"), false},
		{b("i"), b("h"), false},    // inverted, from the begin of [h, j)
		{b("i"), b("h\x00"), true}, // inverted, inside [h, j)
		{b("k"), b("i"), false},    // inverted, across the end of [h, j)
		{b("h"), b("h"), false},    // empty at a begin: nothing reaches below h
		{b("i"), b("i"), true},
		{b("\x00"), open, false},
		{nil, nil, false},
	}
	for _, c := range cases {
		if got := merged.allows(c.key, c.end); got != c.want {
			t.Errorf("allows(%q, %q) = %v, want %v", c.key, c.end, got, c.want)
		}
		if got := refAllows(perms, c.key, c.end); got != c.want {
			t.Errorf("reference(%q, %q) = %v, want %v (table or reference wrong)", c.key, c.end, got, c.want)
		}
	}
}

// TestAllowsRandom compares the merged check with the literal one over
// random permissions and requests on a small alphabet, where overlaps,
// touching ranges and prefixes happen all the time.
func TestAllowsRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	key := func() []byte {
		n := 1 + rng.IntN(3)
		k := make([]byte, n)
		for i := range k {
			k[i] = "\x00abc"[rng.IntN(4)]
		}
		return k
	}
	for iter := range 20000 {
		var perms []perm
		for range rng.IntN(6) {
			p := perm{key: key()}
			switch rng.IntN(3) {
			case 1:
				p.end = key()
			case 2:
				p.end = []byte{0}
			}
			if validPermRange(p.key, p.end) {
				perms = append(perms, p)
			}
		}
		spans := spansOf(perms...)
		merged := newSpans(slices.Clone(spans))
		for range 20 {
			k := key()
			var end []byte
			switch rng.IntN(3) {
			case 1:
				end = key()
			case 2:
				end = []byte{0}
			}
			if got, want := merged.allows(k, end), refAllows(spans, k, end); got != want {
				t.Fatalf("iteration %d: perms %s, request [%q, %q): got %v, want %v", iter, fmtPerms(perms), k, end, got, want)
			}
		}
	}
}

func fmtPerms(perms []perm) string {
	var buf bytes.Buffer
	for _, p := range perms {
		fmt.Fprintf(&buf, "[%q,%q) ", p.key, p.end)
	}
	return buf.String()
}

func TestMergeSpans(t *testing.T) {
	b := func(s string) []byte { return []byte(s) }
	got := mergeSpans([]span{
		{b("c"), b("e")}, {b("a"), b("b")}, {b("b"), b("c")}, {b("x"), nil}, {b("y"), b("z")}, {b("q"), b("p")},
	})
	want := []span{{b("a"), b("e")}, {b("x"), nil}}
	if len(got) != len(want) {
		t.Fatalf("merged %d spans, want %d: %q", len(got), len(want), got)
	}
	for i := range want {
		if !bytes.Equal(got[i].begin, want[i].begin) || !bytes.Equal(got[i].end, want[i].end) {
			t.Errorf("span %d = [%q, %q), want [%q, %q)", i, got[i].begin, got[i].end, want[i].begin, want[i].end)
		}
	}
}

func TestValidPermRange(t *testing.T) {
	cases := []struct {
		key, end string
		want     bool
	}{
		{"a", "", true}, {"a", "b", true}, {"a", "\x00", true}, {"\x00", "\x00", true},
		{"", "", false}, {"", "b", false}, {"b", "a", false}, {"a", "a", false},
	}
	for _, c := range cases {
		if got := validPermRange([]byte(c.key), []byte(c.end)); got != c.want {
			t.Errorf("validPermRange(%q, %q) = %v, want %v", c.key, c.end, got, c.want)
		}
	}
	_ = authpb.Permission_READ
}
