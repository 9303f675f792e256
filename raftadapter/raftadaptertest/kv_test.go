package raftadaptertest

import (
	"bytes"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

func TestKVApplyAndSnapshot(t *testing.T) {
	kv := NewKV()
	if r := kv.Apply(1, Put("a", "1")).(PutResult); r.Existed || r.Index != 1 {
		t.Fatalf("first put = %+v", r)
	}
	if r := kv.Apply(2, Put("a", "2")).(PutResult); !r.Existed || r.Prev != "1" {
		t.Fatalf("second put = %+v", r)
	}
	if err, ok := kv.Apply(3, []byte("junk")).(error); !ok || !errors.Is(err, ErrBadCommand) {
		t.Fatalf("bad command result = %v", err)
	}
	kv.Apply(4, Put("b", "x=y"))
	kv.ApplyConfChange(&raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(uint64(7))}},
		Context: []byte("url7")}, &raftpb.ConfState{})

	w, err := kv.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	kv.Apply(5, Put("c", "after snapshot")) // not in the capture
	var buf1, buf2 bytes.Buffer
	if _, err := w.WriteTo(&buf1); err != nil {
		t.Fatal(err)
	}
	w2, _ := kv.Snapshot()
	w2.WriteTo(&buf2)
	other := NewKV()
	if err := other.Restore(&buf1); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if v, _ := other.Get("b"); v != "x=y" {
		t.Fatalf("restored b = %q", v)
	}
	if _, ok := other.Get("c"); ok {
		t.Fatal("snapshot includes a write made after it was taken")
	}
	if other.Members()[7] != "url7" || other.Applied() != 4 || other.Restores() != 1 {
		t.Fatalf("restored members %v applied %d restores %d", other.Members(), other.Applied(), other.Restores())
	}
	if a, b := other.Writes("a"), other.Writes("b"); a != 2 || b != 1 {
		t.Fatalf("restored write counts a=%d b=%d, want 2 and 1", a, b)
	}
	// Deterministic: the same state encodes to the same bytes.
	third := NewKV()
	third.Restore(bytes.NewReader(buf2.Bytes()))
	w3, _ := third.Snapshot()
	var buf3 bytes.Buffer
	w3.WriteTo(&buf3)
	if !bytes.Equal(buf2.Bytes(), buf3.Bytes()) {
		t.Fatal("snapshot encoding is not deterministic")
	}
	// Out-of-order application is recorded.
	kv.Apply(5, Put("d", "1"))
	if kv.Err() == nil {
		t.Fatal("repeated index not reported")
	}
}

func TestKVRestoreRejectsBadData(t *testing.T) {
	kv := NewKV()
	kv.Apply(1, Put("a", "1"))
	w, _ := kv.Snapshot()
	var buf bytes.Buffer
	w.WriteTo(&buf)
	good := buf.Bytes()
	for name, data := range map[string][]byte{
		"empty":      nil,
		"bad magic":  []byte("XXXX"),
		"truncated":  good[:len(good)-2],
		"trailing":   append(bytes.Clone(good), 0),
		"huge count": append([]byte(kvSnapshotMagic+"\x01"), 0xff, 0xff, 0xff, 0xff, 0x0f),
	} {
		fresh := NewKV()
		if err := fresh.Restore(bytes.NewReader(data)); !errors.Is(err, errBadSnapshot) {
			t.Errorf("%s: Restore = %v, want errBadSnapshot", name, err)
		}
		if fresh.Restores() != 0 {
			t.Errorf("%s: state replaced despite error", name)
		}
	}
}
