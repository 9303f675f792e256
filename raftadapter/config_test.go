package raftadapter_test

import (
	"errors"
	"testing"
	"time"

	"github.com/meshkv/meshkv/raftadapter"
	"github.com/meshkv/meshkv/raftadapter/raftadaptertest"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  raftadapter.Config
		ok   bool
	}{
		{"minimal joiner", raftadapter.Config{ID: 1}, true},
		{"bootstrap", raftadapter.Config{ID: 2, Peers: []uint64{3, 2, 1}}, true},
		{"zero id", raftadapter.Config{}, false},
		{"reserved id", raftadapter.Config{ID: ^uint64(0)}, false},
		{"peers without self", raftadapter.Config{ID: 4, Peers: []uint64{1, 2}}, false},
		{"duplicate peer", raftadapter.Config{ID: 1, Peers: []uint64{1, 1}}, false},
		{"zero peer", raftadapter.Config{ID: 1, Peers: []uint64{1, 0}}, false},
		{"negative tick", raftadapter.Config{ID: 1, TickInterval: -time.Second}, false},
		{"election not above heartbeat", raftadapter.Config{ID: 1, ElectionTicks: 3, HeartbeatTicks: 3}, false},
		{"heartbeat above default election", raftadapter.Config{ID: 1, HeartbeatTicks: 20}, false},
		{"negative inflight", raftadapter.Config{ID: 1, MaxInflightMsgs: -1}, false},
		{"negative inbound", raftadapter.Config{ID: 1, MaxInboundMsgs: -1}, false},
		{"negative close timeout", raftadapter.Config{ID: 1, CloseTimeout: -1}, false},
		{"negative repropose ticks", raftadapter.Config{ID: 1, ReproposeTicks: -1}, false},
		{"everything set", raftadapter.Config{ID: 1, TickInterval: time.Millisecond, ElectionTicks: 5, HeartbeatTicks: 2,
			ReproposeTicks: 1, SnapshotCount: 10, SnapshotCatchUpEntries: 1, MaxSizePerMsg: 1, MaxInflightMsgs: 1, MaxInboundMsgs: 1}, true},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, raftadapter.ErrInvalidConfig) {
			t.Errorf("%s: error %v does not wrap ErrInvalidConfig", tc.name, err)
		}
	}
	peers := []uint64{3, 2, 1}
	cfg := raftadapter.Config{ID: 1, Peers: peers}
	_ = cfg.Validate()
	if cfg.TickInterval != 0 || peers[0] != 3 {
		t.Error("Validate modified the config")
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	net := raftadaptertest.NewNetwork(raftadaptertest.NetworkConfig{})
	defer net.Close()
	if _, err := raftadapter.New(raftadapter.Config{}, raftadaptertest.NewKV(), net.Transport(1)); !errors.Is(err, raftadapter.ErrInvalidConfig) {
		t.Errorf("New(zero config): err = %v, want ErrInvalidConfig", err)
	}
	if _, err := raftadapter.New(raftadapter.Config{ID: 1}, nil, net.Transport(1)); !errors.Is(err, raftadapter.ErrInvalidConfig) {
		t.Errorf("New(nil state machine): err = %v, want ErrInvalidConfig", err)
	}
	if _, err := raftadapter.New(raftadapter.Config{ID: 1}, raftadaptertest.NewKV(), nil); !errors.Is(err, raftadapter.ErrInvalidConfig) {
		t.Errorf("New(nil transport): err = %v, want ErrInvalidConfig", err)
	}
}
