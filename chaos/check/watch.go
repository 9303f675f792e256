package check

import (
	"fmt"
	"sort"
)

// WatchEvent is one event a watcher received.
type WatchEvent struct {
	// Response numbers the watch response the event came in, counting from
	// zero across the watcher's whole life (reconnects included).
	Response  int    `json:"response"`
	Rev       int64  `json:"rev"` // the event's mod revision
	Key       string `json:"key"`
	Delete    bool   `json:"delete,omitempty"`
	Value     string `json:"value,omitempty"`
	CreateRev int64  `json:"create_rev,omitempty"`
	Version   int64  `json:"version,omitempty"`
}

// KV is a key as read back from the store.
type KV struct {
	Key       string `json:"key"`
	Value     string `json:"value"`
	ModRev    int64  `json:"mod_rev"`
	CreateRev int64  `json:"create_rev"`
	Version   int64  `json:"version"`
}

// WatchHistory is what a watcher of the whole key space recorded, and the
// store read back at the end.
type WatchHistory struct {
	// From is the revision the watcher started at (2 or below: from the first
	// write of a fresh store, so every revision must show up).
	From int64
	// To is the store's revision read at the end; events are checked up to
	// it and later ones are ignored.
	To int64
	// Events in the order received.
	Events []WatchEvent
	// Final is every key of the store at revision To.
	Final []KV
	// Reconnects counts how often the watcher resumed on a new stream.
	Reconnects int
}

// Watch checks a watcher of the whole key space:
//
//   - events arrive in revision order, each (revision, key) once, and all
//     events of one revision in one response;
//   - every revision from From to To has events (every revision after the
//     first is made by a write, and the watcher sees all keys);
//   - replaying the events from an empty store gives exactly Final (when
//     From is 2 or below);
//   - every acknowledged write shows up as an event at its revision.
func Watch(h WatchHistory, acked []Write) Result {
	var v violations
	type rk struct {
		rev int64
		key string
	}
	seen := map[rk]int{}
	respOfRev := map[int64]int{}
	byRev := map[int64][]WatchEvent{}
	var last WatchEvent
	n := 0
	for i, e := range h.Events {
		if e.Rev > h.To {
			continue
		}
		n++
		if n > 1 && e.Rev < last.Rev {
			v.addf("event out of order: %s at rev %d (response %d) after rev %d (response %d)", e.Key, e.Rev, e.Response, last.Rev, last.Response)
		}
		if j, dup := seen[rk{e.Rev, e.Key}]; dup {
			v.addf("duplicate event: %s at rev %d delivered twice (events %d and %d, responses %d and %d)", e.Key, e.Rev, j, i, h.Events[j].Response, e.Response)
		} else {
			seen[rk{e.Rev, e.Key}] = i
			byRev[e.Rev] = append(byRev[e.Rev], e)
		}
		if r, ok := respOfRev[e.Rev]; ok && r != e.Response {
			v.addf("revision %d split across responses %d and %d", e.Rev, r, e.Response)
		}
		respOfRev[e.Rev] = e.Response
		if e.Rev < h.From {
			v.addf("event at rev %d is before the watch's start revision %d", e.Rev, h.From)
		}
		last = e
	}
	first := max(h.From, 2)
	var missing []int64
	for r := first; r <= h.To; r++ {
		if len(byRev[r]) == 0 {
			missing = append(missing, r)
		}
	}
	if len(missing) > 0 {
		v.addf("%d revision(s) between %d and %d never delivered: %s", len(missing), first, h.To, revList(missing))
	}

	if h.From <= 2 {
		state := map[string]KV{}
		revs := make([]int64, 0, len(byRev))
		for r := range byRev {
			revs = append(revs, r)
		}
		sort.Slice(revs, func(i, j int) bool { return revs[i] < revs[j] })
		for _, r := range revs {
			for _, e := range byRev[r] {
				if e.Delete {
					delete(state, e.Key)
				} else {
					state[e.Key] = KV{Key: e.Key, Value: e.Value, ModRev: e.Rev, CreateRev: e.CreateRev, Version: e.Version}
				}
			}
		}
		for _, f := range h.Final {
			got, ok := state[f.Key]
			switch {
			case !ok:
				v.addf("replaying the watch does not give key %s (store has %q at rev %d)", f.Key, f.Value, f.ModRev)
			case got != f:
				v.addf("replaying the watch gives %s = %q (mod %d, create %d, version %d); store has %q (mod %d, create %d, version %d)",
					f.Key, got.Value, got.ModRev, got.CreateRev, got.Version, f.Value, f.ModRev, f.CreateRev, f.Version)
			}
			delete(state, f.Key)
		}
		for k, got := range state {
			v.addf("replaying the watch gives %s = %q (rev %d), which the store does not have", k, got.Value, got.ModRev)
		}
	}

	for _, w := range acked {
		if w.Rev < first || w.Rev > h.To {
			continue
		}
		i, ok := seen[rk{w.Rev, w.Key}]
		if !ok {
			v.addf("acknowledged write of %s at rev %d (%s) never delivered to the watcher", w.Key, w.Rev, w.Source)
			continue
		}
		e := h.Events[i]
		if e.Delete != w.Delete || !w.Delete && e.Value != w.Value {
			v.addf("event of %s at rev %d is %s, but the acknowledged write was %s", w.Key, w.Rev, eventString(e), writeString(w))
		}
	}
	return v.result("watch", fmt.Sprintf("%d events over revisions %d..%d, %d reconnects", n, first, h.To, h.Reconnects))
}

func eventString(e WatchEvent) string {
	if e.Delete {
		return "a delete"
	}
	return fmt.Sprintf("put %q", e.Value)
}

func writeString(w Write) string {
	if w.Delete {
		return "a delete"
	}
	return fmt.Sprintf("put %q", w.Value)
}

// revList prints revisions compactly as ranges, at most a few of them.
func revList(revs []int64) string {
	s := ""
	shown := 0
	for i := 0; i < len(revs); {
		j := i
		for j+1 < len(revs) && revs[j+1] == revs[j]+1 {
			j++
		}
		if shown == 8 {
			s += ", ..."
			break
		}
		if s != "" {
			s += ", "
		}
		if i == j {
			s += fmt.Sprint(revs[i])
		} else {
			s += fmt.Sprintf("%d-%d", revs[i], revs[j])
		}
		shown++
		i = j + 1
	}
	return s
}
