package raftadaptertest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
)

// KV is a toy state machine: a string map written with Put commands. It
// counts how many times each key was written (part of the state, so it
// survives snapshots: tests use it to check that a command is applied once),
// records which members joined with what context (as a ConfChangeObserver),
// checks that entries arrive in increasing index order, and writes
// deterministic snapshots. All methods are safe for concurrent use, so tests
// can read it while the raft loop applies.
type KV struct {
	mu          sync.Mutex
	data        map[string]string
	writes      map[string]uint64
	members     map[uint64][]byte
	voterCounts []int
	applied     uint64
	applies     int
	restores    int
	err         error // first contract violation seen
}

// PutResult is what KV.Apply returns for a Put.
type PutResult struct {
	Index   uint64 // log index the put was applied at
	Prev    string // previous value
	Existed bool   // whether the key existed
}

// NewKV returns an empty KV.
func NewKV() *KV {
	return &KV{data: make(map[string]string), writes: make(map[string]uint64), members: make(map[uint64][]byte)}
}

// Put encodes a command setting key to value. key must not contain '='.
func Put(key, value string) []byte {
	return []byte(key + "=" + value)
}

// ErrBadCommand is returned (as the Apply result) for undecodable commands.
var ErrBadCommand = errors.New("raftadaptertest: bad command")

// Apply applies a Put command. It returns a PutResult, or an error value
// wrapping ErrBadCommand for anything else (which changes nothing).
func (kv *KV) Apply(index uint64, data []byte) any {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if index <= kv.applied && kv.err == nil {
		kv.err = fmt.Errorf("apply at index %d after index %d", index, kv.applied)
	}
	kv.applied = index
	kv.applies++
	key, value, ok := strings.Cut(string(data), "=")
	if !ok || key == "" {
		return fmt.Errorf("%w: %q", ErrBadCommand, data)
	}
	prev, existed := kv.data[key]
	kv.data[key] = value
	kv.writes[key]++
	return PutResult{Index: index, Prev: prev, Existed: existed}
}

// ApplyConfChange records members and their context, and the voter count
// of the configuration each change results in.
func (kv *KV) ApplyConfChange(cc *raftpb.ConfChangeV2, state *raftpb.ConfState) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.voterCounts = append(kv.voterCounts, len(state.GetVoters()))
	for _, ch := range cc.GetChanges() {
		id := ch.GetNodeId()
		switch ch.GetType() {
		case raftpb.ConfChangeAddNode, raftpb.ConfChangeAddLearnerNode:
			if _, ok := kv.members[id]; !ok || len(cc.GetContext()) > 0 {
				kv.members[id] = bytes.Clone(cc.GetContext())
			}
		case raftpb.ConfChangeRemoveNode:
			delete(kv.members, id)
		}
	}
}

// Snapshot captures the current state; the returned writer encodes it.
func (kv *KV) Snapshot() (io.WriterTo, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return &kvSnapshot{applied: kv.applied, data: maps.Clone(kv.data), writes: maps.Clone(kv.writes),
		members: maps.Clone(kv.members)}, nil
}

// Restore replaces the state with a snapshot written by Snapshot.
func (kv *KV) Restore(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("raftadaptertest: reading snapshot: %w", err)
	}
	s, err := decodeKVSnapshot(raw)
	if err != nil {
		return err
	}
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.applied, kv.data, kv.writes, kv.members = s.applied, s.data, s.writes, s.members
	kv.restores++
	return nil
}

// Get returns the value of key.
func (kv *KV) Get(key string) (string, bool) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	v, ok := kv.data[key]
	return v, ok
}

// Writes returns how many Puts to key have been applied, counting those
// inside restored snapshots.
func (kv *KV) Writes(key string) uint64 {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.writes[key]
}

// Len returns the number of keys.
func (kv *KV) Len() int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return len(kv.data)
}

// Data returns a copy of the map.
func (kv *KV) Data() map[string]string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return maps.Clone(kv.data)
}

// VoterCounts lists, for every membership change applied, the number of
// voters of the (incoming) configuration it resulted in.
func (kv *KV) VoterCounts() []int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return slices.Clone(kv.voterCounts)
}

// Members returns a copy of the recorded members and their contexts.
func (kv *KV) Members() map[uint64]string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	out := make(map[uint64]string, len(kv.members))
	for id, c := range kv.members {
		out[id] = string(c)
	}
	return out
}

// Applied returns the index of the last applied Put (or restored snapshot).
func (kv *KV) Applied() uint64 {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.applied
}

// Restores returns how many snapshots were restored.
func (kv *KV) Restores() int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.restores
}

// Err returns the first contract violation seen (entries out of order).
func (kv *KV) Err() error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.err
}

const kvSnapshotMagic = "KVS2"

type kvSnapshot struct {
	applied uint64
	data    map[string]string
	writes  map[string]uint64
	members map[uint64][]byte
}

// WriteTo encodes the snapshot deterministically (sorted keys).
func (s *kvSnapshot) WriteTo(w io.Writer) (int64, error) {
	var b []byte
	b = append(b, kvSnapshotMagic...)
	b = binary.AppendUvarint(b, s.applied)
	b = binary.AppendUvarint(b, uint64(len(s.data)))
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		b = appendBytes(b, []byte(k))
		b = appendBytes(b, []byte(s.data[k]))
		b = binary.AppendUvarint(b, s.writes[k])
	}
	b = binary.AppendUvarint(b, uint64(len(s.members)))
	for _, id := range slices.Sorted(maps.Keys(s.members)) {
		b = binary.AppendUvarint(b, id)
		b = appendBytes(b, s.members[id])
	}
	n, err := w.Write(b)
	return int64(n), err
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// errBadSnapshot is wrapped by Restore for undecodable data.
var errBadSnapshot = errors.New("raftadaptertest: bad KV snapshot")

func decodeKVSnapshot(raw []byte) (*kvSnapshot, error) {
	d := decoder{b: raw}
	if !bytes.HasPrefix(raw, []byte(kvSnapshotMagic)) {
		return nil, fmt.Errorf("%w: missing header", errBadSnapshot)
	}
	d.b = d.b[len(kvSnapshotMagic):]
	s := &kvSnapshot{applied: d.uvarint(), data: make(map[string]string), writes: make(map[string]uint64),
		members: make(map[uint64][]byte)}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		k := string(d.bytes())
		s.data[k] = string(d.bytes())
		s.writes[k] = d.uvarint()
	}
	for n := d.count(); n > 0 && d.err == nil; n-- {
		id := d.uvarint()
		s.members[id] = bytes.Clone(d.bytes())
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = errors.New("trailing bytes")
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: %w", errBadSnapshot, d.err)
	}
	return s, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("truncated number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads an element count, which cannot exceed the bytes left.
func (d *decoder) count() uint64 {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = fmt.Errorf("count %d exceeds data", n)
	}
	return n
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.err = fmt.Errorf("length %d exceeds data", n)
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}
