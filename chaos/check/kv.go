package check

import (
	"cmp"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// kvState is the model's state for one key.
type kvState struct {
	exists bool
	value  string
}

// kvInput is what a client asked.
type kvInput struct {
	kind   OpKind
	key    string
	value  string
	expect string
}

// kvOutput is what a client was told; unknown marks an indeterminate write.
type kvOutput struct {
	unknown   bool
	found     bool
	value     string
	deleted   int64
	succeeded bool
}

// KVModel is the sequential specification of one meshkv key as the chaos
// workload uses it: Get, Put, Delete and compare-and-set on the value. The
// model is partitioned by key (linearizability is compositional, so a history
// of single-key operations is linearizable if each key's history is).
//
// An indeterminate write (unknown output) always steps; its effect is what
// the operation would do in the state it is linearized in, so an
// indeterminate compare-and-set swaps only where its compare holds.
func KVModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := map[string][]porcupine.Operation{}
			var keys []string
			for _, op := range history {
				k := op.Input.(kvInput).key
				if _, ok := byKey[k]; !ok {
					keys = append(keys, k)
				}
				byKey[k] = append(byKey[k], op)
			}
			sort.Strings(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return kvState{} },
		Step: func(state, input, output any) (bool, any) {
			return kvStep(state.(kvState), input.(kvInput), output.(kvOutput))
		},
		Hash: func(state any) uint64 {
			s := state.(kvState)
			h := fnv.New64a()
			if s.exists {
				h.Write([]byte{1})
			}
			h.Write([]byte(s.value))
			return h.Sum64()
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(kvInput), output.(kvOutput)
			var s string
			switch in.kind {
			case Get:
				s = fmt.Sprintf("get(%s)", in.key)
			case Put:
				s = fmt.Sprintf("put(%s, %q)", in.key, in.value)
			case Delete:
				s = fmt.Sprintf("delete(%s)", in.key)
			case CAS:
				s = fmt.Sprintf("cas(%s, %q -> %q)", in.key, in.expect, in.value)
			}
			switch {
			case out.unknown:
				return s + " -> unknown"
			case in.kind == Get && !out.found:
				return s + " -> not found"
			case in.kind == Get:
				return fmt.Sprintf("%s -> %q", s, out.value)
			case in.kind == Delete:
				return fmt.Sprintf("%s -> deleted %d", s, out.deleted)
			case in.kind == CAS && out.succeeded:
				return s + " -> swapped"
			case in.kind == CAS:
				return s + " -> compare failed"
			}
			return s + " -> ok"
		},
		DescribeState: func(state any) string {
			s := state.(kvState)
			if !s.exists {
				return "(absent)"
			}
			return fmt.Sprintf("%q", s.value)
		},
		DescribeOperationMetadata: func(info any) string {
			if info == nil {
				return ""
			}
			return fmt.Sprint(info)
		},
	}
}

func kvStep(s kvState, in kvInput, out kvOutput) (bool, any) {
	switch in.kind {
	case Get:
		if out.unknown {
			return true, s
		}
		if out.found != s.exists {
			return false, s
		}
		return !out.found || out.value == s.value, s
	case Put:
		return true, kvState{exists: true, value: in.value}
	case Delete:
		if !out.unknown {
			want := int64(0)
			if s.exists {
				want = 1
			}
			if out.deleted != want {
				return false, s
			}
		}
		return true, kvState{}
	case CAS:
		holds := s.exists && s.value == in.expect
		if !out.unknown && out.succeeded != holds {
			return false, s
		}
		if holds {
			return true, kvState{exists: true, value: in.value}
		}
		return true, s
	}
	return false, s
}

// infinity is the return time of an indeterminate operation: it may take
// effect at any point after its call.
const infinity = math.MaxInt64

// operations turns the history into porcupine operations. Failed operations
// and indeterminate reads are left out (they had no effect and told nothing).
// With prune, indeterminate Puts whose value nobody ever observed are left out
// too (see Linearizable).
func operations(ops []Op, prune bool) []porcupine.Operation {
	observed := map[string]bool{}
	if prune {
		for _, op := range ops {
			if op.Outcome != OK {
				continue
			}
			switch {
			case op.Kind == Get && op.Found:
				observed[op.Key+"\x00"+op.Got] = true
			case op.Kind == CAS && op.Succeeded:
				observed[op.Key+"\x00"+op.Expect] = true
			}
		}
	}
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		if op.Outcome == Failed || op.Outcome == Indeterminate && op.Kind == Get {
			continue
		}
		if prune && op.Outcome == Indeterminate && op.Kind == Put && !observed[op.Key+"\x00"+op.Value] {
			continue
		}
		in := kvInput{kind: op.Kind, key: op.Key, value: op.Value, expect: op.Expect}
		o := porcupine.Operation{ClientId: op.Client, Input: in, Call: int64(op.Call), Metadata: op.Endpoint}
		if op.Outcome == Indeterminate {
			o.Output = kvOutput{unknown: true}
			o.Return = infinity
		} else {
			o.Output = kvOutput{found: op.Found, value: op.Got, deleted: op.Deleted, succeeded: op.Succeeded}
			o.Return = int64(op.Return)
		}
		out = append(out, o)
	}
	return out
}

// Linearization is the result of a linearizability check, with what is needed
// to draw porcupine's visualization of it.
type Linearization struct {
	Result
	// Verdict is porcupine's answer for the history it checked last.
	Verdict porcupine.CheckResult
	info    porcupine.LinearizationInfo
	checked bool // info is valid
}

// Visualize writes porcupine's HTML visualization of the checked history to
// path. It is meant for failed checks: it shows the longest partial
// linearizations and where they got stuck.
func (l Linearization) Visualize(path string) error {
	if !l.checked {
		return fmt.Errorf("check: no linearization to visualize")
	}
	return porcupine.VisualizePath(KVModel(), l.info, path)
}

// Linearizable checks that the history of key-value operations is
// linearizable, within timeout (0: no limit). It first checks the history
// without indeterminate Puts that nobody observed: if that is linearizable so
// is the full history (an unobserved write can be linearized at the end).
// Otherwise the full history decides.
func Linearizable(ops []Op, timeout time.Duration) Linearization {
	const name = "linearizable"
	var inc, ok int
	for _, op := range ops {
		switch op.Outcome {
		case OK:
			ok++
		case Indeterminate:
			inc++
		}
	}
	detail := func(extra string) string {
		return fmt.Sprintf("%d ops, %d ok, %d indeterminate%s", len(ops), ok, inc, extra)
	}
	deadline := time.Now().Add(timeout)
	remaining := func() time.Duration {
		if timeout == 0 {
			return 0
		}
		return max(time.Until(deadline), time.Millisecond)
	}
	model := KVModel()
	pruned := operations(ops, true)
	full := operations(ops, false)
	res, info := porcupine.CheckOperationsVerbose(model, pruned, remaining())
	if res == porcupine.Ok {
		return Linearization{Result: Result{Check: name, Status: Pass, Detail: detail("")}, Verdict: res, info: info, checked: true}
	}
	checked := pruned
	if len(full) != len(pruned) || res == porcupine.Unknown {
		checked = full
		res, info = porcupine.CheckOperationsVerbose(model, full, remaining())
	}
	l := Linearization{Verdict: res, info: info, checked: true}
	switch res {
	case porcupine.Ok:
		l.Result = Result{Check: name, Status: Pass, Detail: detail("")}
	case porcupine.Unknown:
		l.Result = Result{Check: name, Status: Inconclusive, Detail: detail(fmt.Sprintf("; search timed out after %v", timeout))}
	default:
		l.Result = Result{Check: name, Status: Fail, Detail: detail("; not linearizable"), Violations: stuckKeys(model, info, checked)}
	}
	return l
}

// stuckKeys describes, for each key whose history is not linearizable, the
// longest prefix porcupine could linearize and the operation it ended with.
// history is the list of operations that was checked.
func stuckKeys(model porcupine.Model, info porcupine.LinearizationInfo, history []porcupine.Operation) []string {
	parts := model.Partition(history)
	var out []string
	for i, partials := range info.PartialLinearizationsOperations() {
		if i >= len(parts) || len(parts[i]) == 0 {
			continue
		}
		var longest []porcupine.Operation
		for _, p := range partials {
			if len(p) > len(longest) {
				longest = p
			}
		}
		if len(longest) == len(parts[i]) {
			continue // this key's history is linearizable
		}
		key := parts[i][0].Input.(kvInput).key
		if len(longest) == 0 {
			out = append(out, fmt.Sprintf("key %s: none of its %d ops can come first", key, len(parts[i])))
			continue
		}
		last := longest[len(longest)-1]
		msg := fmt.Sprintf("key %s: only %d of %d ops linearize; the last that fits is %s",
			key, len(longest), len(parts[i]), model.DescribeOperation(last.Input, last.Output))
		if next, ok := firstMissing(parts[i], longest); ok {
			msg += fmt.Sprintf("; the earliest op left over is %s (called at %v)",
				model.DescribeOperation(next.Input, next.Output), time.Duration(next.Call))
		}
		out = append(out, msg)
	}
	return out
}

// firstMissing returns the earliest-called operation of part that is not in
// linearized.
func firstMissing(part, linearized []porcupine.Operation) (porcupine.Operation, bool) {
	var best porcupine.Operation
	found := false
	for _, op := range part {
		if slices.Contains(linearized, op) {
			continue
		}
		if !found || op.Call < best.Call {
			best, found = op, true
		}
	}
	return best, found
}

// Revisions checks what the response revisions say about order, across keys:
// a write that created a revision gets a revision above every write
// acknowledged before it was sent; every response's header revision is at
// least the revision of every write acknowledged before the request was sent;
// a Get that read a value reports the revision the value was written at.
func Revisions(ops []Op) Result {
	var v violations
	type ack struct {
		ret time.Duration
		rev int64
		op  Op
	}
	var acks []ack
	writtenAt := map[string]int64{} // key + value -> revision of its acknowledged write
	for _, op := range ops {
		if op.Outcome != OK {
			continue
		}
		if createsRev(op) {
			acks = append(acks, ack{op.Return, op.Rev, op})
		}
		if createsRev(op) && op.Kind != Delete {
			kv := op.Key + "\x00" + op.Value
			if prev, dup := writtenAt[kv]; dup && prev != op.Rev {
				v.addf("value %q of %s acknowledged at revisions %d and %d (values are unique per write)", op.Value, op.Key, prev, op.Rev)
			}
			writtenAt[kv] = op.Rev
		}
	}
	slices.SortFunc(acks, func(a, b ack) int { return cmp.Compare(a.ret, b.ret) })
	byCall := make([]Op, 0, len(ops))
	for _, op := range ops {
		if op.Outcome == OK && op.Rev > 0 {
			byCall = append(byCall, op)
		}
	}
	slices.SortFunc(byCall, func(a, b Op) int { return cmp.Compare(a.Call, b.Call) })
	seen := map[int64]Op{}
	var maxRev int64
	var maxOp Op
	i := 0
	for _, op := range byCall {
		for i < len(acks) && acks[i].ret < op.Call {
			if acks[i].rev > maxRev {
				maxRev, maxOp = acks[i].rev, acks[i].op
			}
			i++
		}
		if createsRev(op) {
			if op.Rev <= maxRev {
				v.addf("%s got revision %d, but %s was acknowledged at revision %d before it was sent", op, op.Rev, maxOp, maxRev)
			}
			if other, dup := seen[op.Rev]; dup {
				v.addf("two writes acknowledged at revision %d: %s and %s", op.Rev, other, op)
			}
			seen[op.Rev] = op
		} else if op.Rev < maxRev {
			v.addf("%s answered at revision %d, but %s was acknowledged at revision %d before it was sent (stale read)", op, op.Rev, maxOp, maxRev)
		}
		if op.Kind == Get && op.Found && op.ModRev > 0 {
			if rev, ok := writtenAt[op.Key+"\x00"+op.Got]; ok && rev != op.ModRev {
				v.addf("%s reports mod revision %d, but that value was written at revision %d", op, op.ModRev, rev)
			}
		}
	}
	return v.result("revisions", fmt.Sprintf("%d acknowledged writes, %d responses", len(acks), len(byCall)))
}

// createsRev reports whether an OK op created a revision.
func createsRev(op Op) bool {
	switch op.Kind {
	case Put:
		return true
	case CAS:
		return op.Succeeded
	case Delete:
		return op.Deleted > 0
	}
	return false
}
