package check

import "fmt"

// MemberHash is one member's HashKV answer at a revision all members share.
type MemberHash struct {
	Member     string `json:"member"`
	Revision   int64  `json:"revision"`
	Hash       uint32 `json:"hash"`
	CompactRev int64  `json:"compact_revision"`
	// Err is set when the member could not be asked.
	Err string `json:"err,omitempty"`
}

// Consistent checks that every member holds the same key-value history: equal
// HashKV hashes at the same revision (and the same compact revision, which
// the hash covers from). Members that could not answer make the check
// inconclusive unless two answers already disagree.
func Consistent(hs []MemberHash) Result {
	const name = "consistent"
	var v violations
	var first *MemberHash
	errs := 0
	var firstErr string
	for i := range hs {
		h := &hs[i]
		if h.Err != "" {
			errs++
			if firstErr == "" {
				firstErr = h.Member + ": " + h.Err
			}
			continue
		}
		if first == nil {
			first = h
			continue
		}
		switch {
		case h.Revision != first.Revision:
			v.addf("%s hashed revision %d but %s revision %d: not comparable", h.Member, h.Revision, first.Member, first.Revision)
		case h.CompactRev != first.CompactRev || h.Hash != first.Hash:
			v.addf("%s and %s differ at revision %d: hash %08x vs %08x (compacted at %d vs %d)",
				h.Member, first.Member, h.Revision, h.Hash, first.Hash, h.CompactRev, first.CompactRev)
		}
	}
	ok := len(hs) - errs
	res := v.result(name, fmt.Sprintf("%d members agree", ok))
	if first != nil {
		res = v.result(name, fmt.Sprintf("%d members agree on HashKV %08x at revision %d", ok, first.Hash, first.Revision))
	}
	if res.Status == Pass && (errs > 0 || ok < 2) {
		res.Status = Inconclusive
		res.Detail = fmt.Sprintf("%d of %d members answered; first error: %s", ok, len(hs), firstErr)
	}
	return res
}
