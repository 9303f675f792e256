package meshtransport

import (
	"fmt"

	"github.com/meshkv/meshkv/internal/ids"
)

// Membership messages are transport frames, not gossip: each is sent to
// one member and arrives attributed to its sender's key (From is derived
// from the key the link or the seal proved), so a node can act on what a
// specific member of its configuration said. The transport gives them no
// meaning; the layer above sends them with SendMember and reads them from
// MemberMessages.

// MemberKind says what a membership message is.
type MemberKind uint8

const (
	// RemovalNotice: "you were removed" (Term, Index: the sender's applied
	// state that shows it).
	RemovalNotice MemberKind = iota + 1
	// MemberQuery: "am I still a member?" (Nonce matches the reply).
	MemberQuery
	// MemberReply answers a MemberQuery from the replier's applied state
	// (Status, Term, Leader, Index; Nonce echoed).
	MemberReply
	// JoinRequest: the sender asks to join our cluster.
	JoinRequest
)

func (k MemberKind) String() string {
	switch k {
	case RemovalNotice:
		return "removal-notice"
	case MemberQuery:
		return "member-query"
	case MemberReply:
		return "member-reply"
	case JoinRequest:
		return "join-request"
	}
	return fmt.Sprintf("member-kind(%d)", uint8(k))
}

func (k MemberKind) frameKind() (frameKind, bool) {
	switch k {
	case RemovalNotice:
		return kindRemoved, true
	case MemberQuery:
		return kindQuery, true
	case MemberReply:
		return kindReply, true
	case JoinRequest:
		return kindJoin, true
	}
	return 0, false
}

// MemberStatus is a replier's view of the asker's membership.
type MemberStatus uint8

const (
	StatusUnknown MemberStatus = iota // the replier cannot tell (no cluster, or not caught up)
	StatusMember                      // a voter or learner in the replier's applied configuration
	StatusRemoved                     // removed in the replier's applied configuration
)

func (s MemberStatus) String() string {
	switch s {
	case StatusMember:
		return "member"
	case StatusRemoved:
		return "removed"
	}
	return "unknown"
}

// MemberMessage is one membership message.
type MemberMessage struct {
	Kind MemberKind
	// From is the sender, proven by its key. It is set by the transport on
	// receipt and ignored by SendMember.
	From MemberID
	// ClusterID is the sender's cluster id when it sent the message (0 if
	// it had none); messages whose id differs from ours (both non-zero) are
	// dropped. Set by the transport.
	ClusterID ids.ClusterID
	Nonce     uint64 // MemberQuery, MemberReply
	Term      uint64 // RemovalNotice, MemberReply
	Index     uint64 // RemovalNotice, MemberReply: the sender's applied index
	Status    MemberStatus
	Leader    MemberID // MemberReply: the replier's known leader (0 if none)
}

// SendMember sends a membership message to the member with raft id to, on
// the link if one is up, else sealed over the mesh. It never blocks; it
// fails with ErrUnknownMember for a raft id with neither a link nor a
// gossip entry, and with ErrQueueFull when the peer's control queue is full.
// Delivery is best effort, like everything on the relayed path: callers
// retry (a query) or repeat (a notice) as they see fit.
func (t *Transport) SendMember(to MemberID, m MemberMessage) error {
	if t.closed.Load() {
		return ErrStopped
	}
	k, ok := m.Kind.frameKind()
	if !ok {
		return fmt.Errorf("%w: member message kind %d", ErrInvalidConfig, m.Kind)
	}
	p := t.peerByID(to)
	if p == nil {
		return fmt.Errorf("%w: %v", ErrUnknownMember, to)
	}
	f := appendHeader(make([]byte, 0, headerLen+replyLen), t.header(k, to, m.Nonce))
	f = appendMemberBody(f, k, memberBody{term: m.Term, index: m.Index, status: m.Status, leader: uint64(m.Leader)})
	if !t.sendControl(p, f) {
		return ErrQueueFull
	}
	t.stats.memberSent.Add(1)
	return nil
}

// MemberMessages delivers the membership messages received, in arrival
// order. The channel is bounded: messages arriving while it is full are
// dropped and counted. It is never closed.
func (t *Transport) MemberMessages() <-chan MemberMessage { return t.memberc }

// receiveMember turns a checked membership frame into a MemberMessage.
func (t *Transport) receiveMember(p *peer, h header, body []byte) {
	mb, err := decodeMemberBody(h.kind, body)
	if err != nil {
		t.stats.drops[dropMalformed].Add(1)
		t.violation(p, "bad %v: %v", h.kind, err)
		return
	}
	m := MemberMessage{From: p.id, ClusterID: ids.ClusterID(h.cluster), Nonce: h.seq,
		Term: mb.term, Index: mb.index, Status: mb.status, Leader: MemberID(mb.leader)}
	switch h.kind {
	case kindRemoved:
		m.Kind = RemovalNotice
		m.Nonce = 0
	case kindQuery:
		m.Kind = MemberQuery
	case kindReply:
		m.Kind = MemberReply
	case kindJoin:
		m.Kind = JoinRequest
		m.Nonce = 0
	}
	select {
	case t.memberc <- m:
		t.stats.memberReceived.Add(1)
	default:
		t.stats.drops[dropMemberQueueFull].Add(1)
	}
}
