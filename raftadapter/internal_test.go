package raftadapter

import (
	"bytes"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	buf := newEnvelopeBuf([]byte("payload"))
	want := envelope{proposer: 0xdeadbeef, term: 7, seq: 42, low: 40}
	want.stamp(buf)
	got, payload, ok := parseEnvelope(buf)
	if !ok || got != want || !bytes.Equal(payload, []byte("payload")) {
		t.Fatalf("parseEnvelope = %+v %q %v, want %+v payload", got, payload, ok, want)
	}
	empty := newEnvelopeBuf(nil)
	want.stamp(empty)
	if _, p, ok := parseEnvelope(empty); !ok || len(p) != 0 {
		t.Fatalf("empty payload: ok %v payload %q", ok, p)
	}
	lowAboveSeq := newEnvelopeBuf(nil)
	envelope{proposer: 1, term: 1, seq: 5, low: 6}.stamp(lowAboveSeq)
	for name, data := range map[string][]byte{
		"low above seq": lowAboveSeq,
		"nil":           nil,
		"short":         buf[:envelopeHeaderLen-1],
		"bad version":   append([]byte{9}, buf[1:]...),
		"zero ids":      make([]byte, envelopeHeaderLen),
	} {
		if _, _, ok := parseEnvelope(data); ok {
			t.Errorf("%s: parsed as an envelope", name)
		}
	}
}

func TestCheckInbound(t *testing.T) {
	msg := func(typ raftpb.MessageType, to, from uint64, ents ...*raftpb.Entry) *raftpb.Message {
		return &raftpb.Message{Type: typ.Enum(), To: new(to), From: new(from), Entries: ents}
	}
	snap := func(s *raftpb.Snapshot) *raftpb.Message {
		m := msg(raftpb.MsgSnap, 1, 2)
		m.Snapshot = s
		return m
	}
	data := func(b string) *raftpb.Entry { return &raftpb.Entry{Data: []byte(b)} }
	ent := func(index, term uint64) *raftpb.Entry { return &raftpb.Entry{Index: new(index), Term: new(term)} }
	app := func(index, logTerm, term uint64, ents ...*raftpb.Entry) *raftpb.Message {
		m := msg(raftpb.MsgApp, 1, 2, ents...)
		m.Index, m.LogTerm, m.Term = new(index), new(logTerm), new(term)
		return m
	}
	cases := map[string]struct {
		m     *raftpb.Message
		valid bool
	}{
		"append":                {msg(raftpb.MsgApp, 1, 2), true},
		"nil":                   {nil, false},
		"wrong recipient":       {msg(raftpb.MsgApp, 3, 2), false},
		"no sender":             {&raftpb.Message{Type: raftpb.MsgApp.Enum(), To: new(uint64(1))}, false},
		"from self":             {msg(raftpb.MsgApp, 1, 1), false},
		"local type":            {msg(raftpb.MsgHup, 1, 2), false},
		"negative type":         {msg(raftpb.MessageType(-1), 1, 2), false},
		"unknown type":          {msg(raftpb.MessageType(99), 1, 2), false},
		"empty proposal":        {msg(raftpb.MsgProp, 1, 2), false},
		"proposal":              {msg(raftpb.MsgProp, 1, 2, data("x")), true},
		"forwarded change":      {msg(raftpb.MsgProp, 1, 2, &raftpb.Entry{Type: raftpb.EntryConfChangeV2.Enum(), Data: []byte("junk")}), false},
		"read index no ctx":     {msg(raftpb.MsgReadIndex, 1, 2), false},
		"read index":            {msg(raftpb.MsgReadIndex, 1, 2, data("c")), true},
		"snap without data":     {snap(nil), false},
		"snap without metadata": {snap(&raftpb.Snapshot{}), false},
		"snap":                  {snap(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{}}), true},
		"append in order":       {app(5, 2, 3, ent(6, 2), ent(7, 3)), true},
		"append gap":            {app(5, 2, 3, ent(7, 2)), false},
		"append term falls":     {app(5, 2, 3, ent(6, 1)), false},
		"append newer term":     {app(5, 2, 3, ent(6, 4)), false},
		"append index wraps":    {app(^uint64(0), 2, 3, ent(0, 2)), false},
	}
	for name, tc := range cases {
		if err := checkInbound(1, tc.m); (err == nil) != tc.valid {
			t.Errorf("%s: checkInbound = %v, want valid %v", name, err, tc.valid)
		}
	}
}

func TestValidateConfRequest(t *testing.T) {
	cs := &raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}}
	single := &raftpb.ConfState{Voters: []uint64{1}}
	joint := &raftpb.ConfState{Voters: []uint64{1, 2, 4}, VotersOutgoing: []uint64{1, 2, 3}, AutoLeave: new(true)}
	one := func(k ConfChangeKind, id uint64) []ConfChange { return []ConfChange{{k, id}} }
	cases := []struct {
		name    string
		cs      *raftpb.ConfState
		changes []ConfChange
		want    error
		left    int // changes left when valid
	}{
		{"add learner", cs, one(AddLearnerChange, 4), nil, 1},
		{"add existing voter", cs, one(AddLearnerChange, 1), ErrMemberExists, 0},
		{"add existing learner", cs, one(AddLearnerChange, 3), ErrMemberExists, 0},
		{"add id 0", cs, one(AddLearnerChange, 0), ErrInvalidConfChange, 0},
		{"promote learner", cs, one(PromoteChange, 3), nil, 1},
		{"promote voter", cs, one(PromoteChange, 2), errNoop, 0},
		{"promote stranger", cs, one(PromoteChange, 9), ErrUnknownMember, 0},
		{"remove voter", cs, one(RemoveChange, 2), nil, 1},
		{"remove learner", cs, one(RemoveChange, 3), nil, 1},
		{"remove stranger", cs, one(RemoveChange, 9), ErrUnknownMember, 0},
		{"remove last voter", single, one(RemoveChange, 1), ErrInvalidConfChange, 0},
		{"demote voter", cs, one(DemoteChange, 2), nil, 1},
		{"demote learner", cs, one(DemoteChange, 3), ErrInvalidConfChange, 0},
		{"demote last voter", single, one(DemoteChange, 1), ErrInvalidConfChange, 0},
		{"unknown kind", cs, one(ConfChangeKind(9), 1), ErrInvalidConfChange, 0},
		{"none", cs, nil, ErrInvalidConfChange, 0},
		{"joint: promote and remove", cs, []ConfChange{{PromoteChange, 3}, {RemoveChange, 2}}, nil, 2},
		{"joint: with a no-op", cs, []ConfChange{{PromoteChange, 3}, {PromoteChange, 2}}, nil, 1},
		{"joint: twice the same id", cs, []ConfChange{{PromoteChange, 3}, {RemoveChange, 3}}, ErrInvalidConfChange, 0},
		{"joint: no voter left", cs, []ConfChange{{RemoveChange, 1}, {RemoveChange, 2}}, ErrInvalidConfChange, 0},
		{"while joint", joint, one(AddLearnerChange, 9), ErrInvalidConfChange, 0},
	}
	for _, tc := range cases {
		left, err := validateConfRequest(tc.cs, tc.changes)
		if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
		if err == nil && len(left) != tc.left {
			t.Errorf("%s: %d changes left, want %d", tc.name, len(left), tc.left)
		}
	}
}

// Committed changes raft could not apply (it would panic) are cancelled;
// joint changes and leaving a joint configuration are applied.
func TestCheckCommittedConfChange(t *testing.T) {
	single := &raftpb.ConfState{Voters: []uint64{1}}
	three := &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	joint := &raftpb.ConfState{Voters: []uint64{1, 2, 4}, VotersOutgoing: []uint64{1, 2, 3}, AutoLeave: new(true)}
	change := func(typ raftpb.ConfChangeType, id uint64) *raftpb.ConfChangeSingle {
		return &raftpb.ConfChangeSingle{Type: typ.Enum(), NodeId: new(id)}
	}
	cc := func(chs ...*raftpb.ConfChangeSingle) *raftpb.ConfChangeV2 { return &raftpb.ConfChangeV2{Changes: chs} }
	cases := []struct {
		name string
		cs   *raftpb.ConfState
		cc   *raftpb.ConfChangeV2
		ok   bool
	}{
		{"add", single, cc(change(raftpb.ConfChangeAddLearnerNode, 2)), true},
		{"remove last voter", single, cc(change(raftpb.ConfChangeRemoveNode, 1)), false},
		{"demote last voter", single, cc(change(raftpb.ConfChangeAddLearnerNode, 1)), false},
		{"leave joint when not joint", single, &raftpb.ConfChangeV2{}, false},
		{"enter joint", three, cc(change(raftpb.ConfChangeAddNode, 4), change(raftpb.ConfChangeRemoveNode, 3)), true},
		{"enter joint removing every voter", three, cc(change(raftpb.ConfChangeRemoveNode, 1), change(raftpb.ConfChangeRemoveNode, 2),
			change(raftpb.ConfChangeRemoveNode, 3)), false},
		{"change while joint", joint, cc(change(raftpb.ConfChangeAddLearnerNode, 9)), false},
		{"leave joint", joint, &raftpb.ConfChangeV2{}, true},
		{"cancelled", single, cancelledConfChange(), true},
	}
	for _, tc := range cases {
		if err := checkCommittedConfChange(tc.cs, tc.cc); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
