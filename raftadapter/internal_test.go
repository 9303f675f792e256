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
	cases := []struct {
		name string
		cs   *raftpb.ConfState
		typ  raftpb.ConfChangeType
		id   uint64
		want error
	}{
		{"add learner", cs, raftpb.ConfChangeAddLearnerNode, 4, nil},
		{"add existing voter", cs, raftpb.ConfChangeAddLearnerNode, 1, ErrMemberExists},
		{"add existing learner", cs, raftpb.ConfChangeAddLearnerNode, 3, ErrMemberExists},
		{"add id 0", cs, raftpb.ConfChangeAddLearnerNode, 0, ErrInvalidConfChange},
		{"promote learner", cs, raftpb.ConfChangeAddNode, 3, nil},
		{"promote voter", cs, raftpb.ConfChangeAddNode, 2, errNoop},
		{"promote stranger", cs, raftpb.ConfChangeAddNode, 9, ErrUnknownMember},
		{"remove voter", cs, raftpb.ConfChangeRemoveNode, 2, nil},
		{"remove learner", cs, raftpb.ConfChangeRemoveNode, 3, nil},
		{"remove stranger", cs, raftpb.ConfChangeRemoveNode, 9, ErrUnknownMember},
		{"remove last voter", single, raftpb.ConfChangeRemoveNode, 1, ErrInvalidConfChange},
		{"update", cs, raftpb.ConfChangeUpdateNode, 1, ErrInvalidConfChange},
	}
	for _, tc := range cases {
		err := validateConfRequest(tc.cs, tc.typ, tc.id)
		if (tc.want == nil && err != nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestCheckCommittedConfChange(t *testing.T) {
	single := &raftpb.ConfState{Voters: []uint64{1}}
	one := func(typ raftpb.ConfChangeType, id uint64) *raftpb.ConfChangeV2 {
		return &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(id)}}}
	}
	node := func(id uint64) *raftpb.ConfChangeSingle { return &raftpb.ConfChangeSingle{NodeId: new(id)} }
	cases := []struct {
		name string
		cc   *raftpb.ConfChangeV2
		ok   bool
	}{
		{"add", one(raftpb.ConfChangeAddLearnerNode, 2), true},
		{"remove last voter", one(raftpb.ConfChangeRemoveNode, 1), false},
		{"demote last voter", one(raftpb.ConfChangeAddLearnerNode, 1), false},
		{"leave joint", &raftpb.ConfChangeV2{}, false},
		{"joint", &raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{node(2), node(3)}}, false},
		{"explicit transition", &raftpb.ConfChangeV2{Transition: raftpb.ConfChangeTransitionJointExplicit.Enum(),
			Changes: []*raftpb.ConfChangeSingle{node(2)}}, false},
		{"cancelled", cancelledConfChange(), true},
	}
	for _, tc := range cases {
		if err := checkCommittedConfChange(single, tc.cc); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}
