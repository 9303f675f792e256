package membership

import (
	"slices"

	"github.com/meshkv/meshkv/internal/ids"
)

// quorum is the majority of n voters.
func quorum(n int) int { return n/2 + 1 }

func sortedSet(s map[ids.MemberID]bool) []ids.MemberID {
	out := make([]ids.MemberID, 0, len(s))
	for id, ok := range s {
		if ok {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

func fmtIDs(list []ids.MemberID) []string {
	out := make([]string, len(list))
	for i, id := range list {
		out[i] = id.String()
	}
	return out
}
