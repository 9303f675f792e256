package check

import (
	"strings"
	"testing"
)

// validWatch is a history of revisions 2..5: put a, put b, put a again,
// delete b; then put c at 6 after the final read (ignored).
func validWatch() WatchHistory {
	return WatchHistory{
		From: 1,
		To:   5,
		Events: []WatchEvent{
			{Response: 0, Rev: 2, Key: "a", Value: "1", CreateRev: 2, Version: 1},
			{Response: 1, Rev: 3, Key: "b", Value: "2", CreateRev: 3, Version: 1},
			{Response: 1, Rev: 4, Key: "a", Value: "3", CreateRev: 2, Version: 2},
			{Response: 2, Rev: 5, Key: "b", Delete: true},
			{Response: 3, Rev: 6, Key: "c", Value: "late", CreateRev: 6, Version: 1},
		},
		Final: []KV{{Key: "a", Value: "3", ModRev: 4, CreateRev: 2, Version: 2}},
	}
}

func validAcked() []Write {
	return []Write{{Key: "a", Value: "1", Rev: 2}, {Key: "a", Value: "3", Rev: 4}, {Key: "b", Delete: true, Rev: 5}}
}

func TestWatchValid(t *testing.T) {
	wantStatus(t, Watch(validWatch(), validAcked()), Pass)

	// Two keys written by one txn arrive in one response.
	h := WatchHistory{From: 2, To: 2, Events: []WatchEvent{
		{Response: 4, Rev: 2, Key: "x", Value: "1", CreateRev: 2, Version: 1},
		{Response: 4, Rev: 2, Key: "y", Value: "1", CreateRev: 2, Version: 1},
	}, Final: []KV{
		{Key: "x", Value: "1", ModRev: 2, CreateRev: 2, Version: 1},
		{Key: "y", Value: "1", ModRev: 2, CreateRev: 2, Version: 1},
	}}
	wantStatus(t, Watch(h, nil), Pass)
}

func TestWatchViolations(t *testing.T) {
	tests := []struct {
		name   string
		want   string
		mutate func(h *WatchHistory) []Write
	}{
		{"duplicated event", "duplicate event", func(h *WatchHistory) []Write {
			e := h.Events[2]
			e.Response = 2
			h.Events = append(h.Events[:3], append([]WatchEvent{e}, h.Events[3:]...)...)
			return validAcked()
		}},
		{"out-of-order event", "out of order", func(h *WatchHistory) []Write {
			h.Events[1], h.Events[2] = h.Events[2], h.Events[1]
			return validAcked()
		}},
		{"missing revision", "never delivered", func(h *WatchHistory) []Write {
			h.Events = append(h.Events[:1], h.Events[2:]...) // drop rev 3
			return nil
		}},
		{"revision split across responses", "split across responses", func(h *WatchHistory) []Write {
			h.To = 6
			h.Events = append(h.Events, WatchEvent{Response: 4, Rev: 6, Key: "d", Value: "x", CreateRev: 6, Version: 1})
			h.Final = append(h.Final, KV{Key: "c", Value: "late", ModRev: 6, CreateRev: 6, Version: 1}, KV{Key: "d", Value: "x", ModRev: 6, CreateRev: 6, Version: 1})
			return nil
		}},
		{"replay differs from the store", "replaying the watch gives", func(h *WatchHistory) []Write {
			h.Final[0].Value = "other"
			return nil
		}},
		{"store key the watch never showed", "does not give key", func(h *WatchHistory) []Write {
			h.Final = append(h.Final, KV{Key: "z", Value: "9", ModRev: 5, CreateRev: 5, Version: 1})
			return nil
		}},
		{"acknowledged write not delivered", "never delivered to the watcher", func(h *WatchHistory) []Write {
			return append(validAcked(), Write{Key: "q", Value: "v", Rev: 3, Source: "client 1"})
		}},
		{"event differs from the acknowledged write", "but the acknowledged write was", func(h *WatchHistory) []Write {
			return []Write{{Key: "a", Value: "not-1", Rev: 2}}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := validWatch()
			acked := tc.mutate(&h)
			r := Watch(h, acked)
			wantStatus(t, r, Fail)
			if !strings.Contains(strings.Join(r.Violations, "\n"), tc.want) {
				t.Errorf("violations %q do not mention %q", r.Violations, tc.want)
			}
		})
	}
}

func TestRevList(t *testing.T) {
	if got, want := revList([]int64{3, 4, 5, 9, 11, 12}), "3-5, 9, 11-12"; got != want {
		t.Errorf("revList = %q, want %q", got, want)
	}
}
