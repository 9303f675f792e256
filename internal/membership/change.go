package membership

import (
	"fmt"
	"strings"

	"github.com/meshkv/meshkv/internal/ids"
)

// OpType is one kind of single membership change.
type OpType uint8

// Single changes. They map one to one onto raft's ConfChangeSingle types:
// AddLearnerNode for OpAddLearner and OpDemote, AddNode for OpPromote,
// RemoveNode for OpRemove.
const (
	// OpAddLearner adds a node that is not a member as a learner.
	OpAddLearner OpType = iota + 1
	// OpPromote makes a learner a voter.
	OpPromote
	// OpRemove removes a voter or a learner.
	OpRemove
	// OpDemote makes a voter a learner.
	OpDemote
)

var opNames = [...]string{"", "add-learner", "promote", "remove", "demote"}

// String returns the operation's name.
func (t OpType) String() string {
	if int(t) < len(opNames) && t != 0 {
		return opNames[t]
	}
	return fmt.Sprintf("op(%d)", t)
}

// Op is one single change of a Change.
type Op struct {
	Type OpType
	ID   ids.MemberID
}

// Change is one membership change: one raft ConfChangeV2. A change with
// several operations must be made with joint consensus (raft's automatic
// transition), so that no intermediate configuration is ever applied on its
// own.
type Change struct {
	Ops []Op
	// Reason says why, for the log.
	Reason string
}

// IsZero reports whether c changes nothing.
func (c Change) IsZero() bool { return len(c.Ops) == 0 }

// Joint reports whether the change needs joint consensus.
func (c Change) Joint() bool { return len(c.Ops) > 1 }

// String describes the change for logs, e.g. "promote(a1) remove(b2)".
func (c Change) String() string {
	parts := make([]string, len(c.Ops))
	for i, op := range c.Ops {
		parts[i] = fmt.Sprintf("%s(%s)", op.Type, op.ID)
	}
	return strings.Join(parts, " ")
}

// Apply returns the voters and learners after c is applied to a
// configuration. It does not check that c is valid for it.
func (c Change) Apply(voters, learners []ids.MemberID) (newVoters, newLearners []ids.MemberID) {
	vs := map[ids.MemberID]bool{}
	ls := map[ids.MemberID]bool{}
	for _, id := range voters {
		vs[id] = true
	}
	for _, id := range learners {
		ls[id] = true
	}
	for _, op := range c.Ops {
		switch op.Type {
		case OpAddLearner, OpDemote:
			delete(vs, op.ID)
			ls[op.ID] = true
		case OpPromote:
			delete(ls, op.ID)
			vs[op.ID] = true
		case OpRemove:
			delete(vs, op.ID)
			delete(ls, op.ID)
		}
	}
	return sortedSet(vs), sortedSet(ls)
}
