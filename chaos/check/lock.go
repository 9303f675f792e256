package check

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Acquisition is one successful lock acquisition as its holder saw it.
type Acquisition struct {
	Holder string `json:"holder"`
	// Token is the fencing token: the create revision of the holder's lock
	// key. Later holders have larger tokens.
	Token int64 `json:"token"`
	// Call and Return bracket the Lock call, from the start of the run.
	Call   time.Duration `json:"call"`
	Return time.Duration `json:"return"`
}

// GuardedWrite is a write of the lock-protected counter that the cluster
// acknowledged: a Txn that put Counter only if the holder's lock key still
// had create revision Token. It committed at revision Rev.
type GuardedWrite struct {
	Holder  string `json:"holder"`
	Token   int64  `json:"token"`
	Counter int64  `json:"counter"`
	Rev     int64  `json:"rev"`
}

// CounterVersion is one committed version of the lock-protected counter,
// read back from the store after the run: the holder, token and counter value
// encoded in the value written at revision Rev.
type CounterVersion struct {
	Rev     int64  `json:"rev"`
	Holder  string `json:"holder"`
	Token   int64  `json:"token"`
	Counter int64  `json:"counter"`
}

// Locks checks lock safety. Each holder, inside the critical section, reads
// the counter and writes counter+1 guarded by its fencing token. So:
//
//   - the committed versions of the counter go 1, 2, 3, ... (a repeated or
//     skipped value means two holders were in the critical section at once);
//   - along the committed versions the fencing tokens never decrease, and
//     one token belongs to one holder (an older holder never commits after a
//     newer one);
//   - every committed token was handed out by a successful Lock to that
//     holder, tokens are unique, and a Lock that started after another
//     returned got a larger token;
//   - every guarded write the cluster acknowledged is among the committed
//     versions.
//
// chain must be in revision order (as read back from the store).
func Locks(acqs []Acquisition, acked []GuardedWrite, chain []CounterVersion) Result {
	var v violations
	byToken := map[int64]Acquisition{}
	for _, a := range acqs {
		if prev, dup := byToken[a.Token]; dup {
			v.addf("token %d handed to %s (lock returned at %v) and to %s (at %v)", a.Token, prev.Holder, prev.Return, a.Holder, a.Return)
			continue
		}
		byToken[a.Token] = a
	}
	// Real-time order of acquisitions: sweep by call time, tracking the
	// largest token returned before each call.
	sortedRet := slices.Clone(acqs)
	slices.SortFunc(sortedRet, func(a, b Acquisition) int { return cmp.Compare(a.Return, b.Return) })
	sortedCall := slices.Clone(acqs)
	slices.SortFunc(sortedCall, func(a, b Acquisition) int { return cmp.Compare(a.Call, b.Call) })
	var best Acquisition
	i := 0
	for _, a := range sortedCall {
		for i < len(sortedRet) && sortedRet[i].Return < a.Call {
			if sortedRet[i].Token > best.Token {
				best = sortedRet[i]
			}
			i++
		}
		if best.Token != 0 && a.Token <= best.Token {
			v.addf("%s locked at %v with token %d, but %s had already locked with token %d at %v",
				a.Holder, a.Call, a.Token, best.Holder, best.Token, best.Return)
		}
	}

	for i, c := range chain {
		if i > 0 && c.Rev <= chain[i-1].Rev {
			v.addf("counter versions out of revision order: %d after %d", c.Rev, chain[i-1].Rev)
		}
		want := int64(1)
		if i > 0 {
			want = chain[i-1].Counter + 1
		}
		if c.Counter != want {
			prev := "nothing"
			if i > 0 {
				p := chain[i-1]
				prev = fmt.Sprintf("%d by %s (token %d, rev %d)", p.Counter, p.Holder, p.Token, p.Rev)
			}
			v.addf("lost update: %s (token %d) wrote counter %d at rev %d after %s; two holders were in the critical section",
				c.Holder, c.Token, c.Counter, c.Rev, prev)
		}
		if i > 0 {
			p := chain[i-1]
			switch {
			case c.Token < p.Token:
				v.addf("fencing token went back: %s wrote with token %d at rev %d after %s wrote with token %d at rev %d",
					c.Holder, c.Token, c.Rev, p.Holder, p.Token, p.Rev)
			case c.Token == p.Token && c.Holder != p.Holder:
				v.addf("token %d used by two holders: %s at rev %d and %s at rev %d", c.Token, p.Holder, p.Rev, c.Holder, c.Rev)
			}
		}
		if len(acqs) > 0 {
			a, ok := byToken[c.Token]
			switch {
			case !ok:
				v.addf("%s wrote with token %d at rev %d, a token no Lock call returned", c.Holder, c.Token, c.Rev)
			case a.Holder != c.Holder:
				v.addf("%s wrote with token %d at rev %d, but that token was handed to %s", c.Holder, c.Token, c.Rev, a.Holder)
			}
		}
	}

	atRev := make(map[int64]CounterVersion, len(chain))
	for _, c := range chain {
		atRev[c.Rev] = c
	}
	for _, w := range acked {
		c, ok := atRev[w.Rev]
		switch {
		case !ok:
			v.addf("acknowledged guarded write lost: %s set counter %d with token %d at rev %d, not in the store", w.Holder, w.Counter, w.Token, w.Rev)
		case c.Holder != w.Holder || c.Token != w.Token || c.Counter != w.Counter:
			v.addf("acknowledged guarded write at rev %d was %s/token %d/counter %d, the store has %s/token %d/counter %d",
				w.Rev, w.Holder, w.Token, w.Counter, c.Holder, c.Token, c.Counter)
		}
	}
	return v.result("lock-safety", fmt.Sprintf("%d acquisitions, %d guarded writes acknowledged, %d committed", len(acqs), len(acked), len(chain)))
}
