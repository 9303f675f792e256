package raftadapter

import (
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultTickInterval           = 100 * time.Millisecond
	DefaultElectionTicks          = 10
	DefaultHeartbeatTicks         = 1
	DefaultSnapshotCount          = 10000
	DefaultSnapshotCatchUpEntries = 5000
	DefaultMaxSizePerMsg          = 1 << 20
	DefaultMaxInflightMsgs        = 256
	DefaultMaxInboundMsgs         = 4096
)

// Config configures a Node. Every field except ID may be left at its zero
// value, which means the documented default.
type Config struct {
	// ID is this member's raft id. It must be nonzero and must never be reused
	// by another member, including this process after a restart: state is kept
	// in memory only, so a restarted process is a new member with a new id.
	ID uint64

	// Peers lists the initial voters, including ID, when bootstrapping a new
	// cluster. Every bootstrapping member must be given the same set (order
	// does not matter). Empty means this member joins an existing cluster: it
	// starts with an empty log and waits for the leader to add it (normally as
	// a learner) and send it the log or a snapshot.
	Peers []uint64

	// BootstrapFromState makes bootstrapping members (Peers set) start from
	// the state the state machine already holds instead of from an empty
	// one: the log begins with a snapshot of that state at index len(Peers),
	// term 1, whose configuration is Peers, so every member that joins later
	// receives the state as a snapshot. Every bootstrapping member must hold
	// the same state. Ignored when joining (Peers empty).
	BootstrapFromState bool
	// BootstrapIndex and BootstrapTerm place the snapshot that
	// BootstrapFromState starts the log with (0: index len(Peers), term 1).
	// A cluster recovered from one surviving member starts at that member's
	// applied index, so that log indexes the state machine has recorded
	// (lease grants, auth tokens) stay in the past.
	BootstrapIndex uint64
	BootstrapTerm  uint64
	// Removed is the initial removed set with BootstrapFromState (see
	// Node.WasRemoved): for a recovered cluster, the other members of the
	// configuration it was recovered from.
	Removed []uint64

	// TickInterval is the wall-clock length of one raft tick. Default 100ms.
	TickInterval time.Duration

	// DisableTicker turns the internal ticker off; logical time then moves
	// only when Node.Tick is called. Meant for deterministic tests.
	DisableTicker bool

	// ElectionTicks is the number of ticks without hearing from a leader after
	// which a follower starts an election (raft randomizes it up to twice
	// this). Must exceed HeartbeatTicks. Default 10.
	ElectionTicks int

	// HeartbeatTicks is the number of ticks between leader heartbeats.
	// Default 1.
	HeartbeatTicks int

	// ReproposeTicks is how many ticks a proposal forwarded by a follower may
	// stay out of the follower's log before the follower proposes it again
	// (same envelope; every member applies only the first copy). raft never
	// retransmits a forwarded proposal, so this is what recovers one whose
	// message was lost, for example with a link that died under it. Must not
	// be negative. Default three heartbeats (300 ms with meshkv's 100 ms
	// ticks), at most ElectionTicks: long enough that a proposal committed
	// normally (milliseconds, tens under load) is rarely sent twice, short
	// enough that one lost with a link costs about the time the transport
	// needs to find another path rather than an election timeout. A copy
	// sent while the original was only slow is harmless: every member
	// applies the first of the two.
	ReproposeTicks int

	// SnapshotCount is the number of applied entries after which the node
	// captures a state machine snapshot and compacts its log. Default 10000.
	SnapshotCount uint64

	// SnapshotCatchUpEntries is the number of entries kept in the log below a
	// snapshot so that slightly slow followers catch up from the log instead
	// of needing a snapshot. Default 5000.
	SnapshotCatchUpEntries uint64

	// MaxSizePerMsg caps the bytes of entries in one append message. Default 1 MiB.
	MaxSizePerMsg uint64

	// MaxInflightMsgs caps the number of unacknowledged append messages per
	// follower. Default 256.
	MaxInflightMsgs int

	// MaxInboundMsgs bounds the queue of messages given to Node.Step and not
	// yet processed; beyond it, messages are dropped and counted. Default 4096.
	MaxInboundMsgs int

	// CloseTimeout bounds how long Close waits for leadership to move to
	// another voter when the closing node is leader. Default ElectionTicks
	// times TickInterval.
	CloseTimeout time.Duration

	// Logger receives state changes (leader, membership, snapshots) and raft's
	// own messages (at debug level). Nil discards.
	Logger *slog.Logger
}

// Validate reports whether c is usable. It does not modify c.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns a copy of c with defaults filled in, or an error
// wrapping ErrInvalidConfig.
func (c Config) withDefaults() (Config, error) {
	bad := func(format string, args ...any) (Config, error) {
		return Config{}, fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	if c.ID == 0 {
		return bad("ID must be nonzero")
	}
	if raft.IsLocalMsgTarget(c.ID) {
		return bad("ID %d is reserved by raft", c.ID)
	}
	if len(c.Peers) > 0 {
		seen := make(map[uint64]bool, len(c.Peers))
		for _, p := range c.Peers {
			switch {
			case p == 0:
				return bad("Peers contains id 0")
			case raft.IsLocalMsgTarget(p):
				return bad("Peers contains reserved id %d", p)
			case seen[p]:
				return bad("Peers contains %d twice", p)
			}
			seen[p] = true
		}
		if !seen[c.ID] {
			return bad("Peers %v must include ID %d", c.Peers, c.ID)
		}
		c.Peers = append([]uint64(nil), c.Peers...)
	}
	if c.BootstrapIndex != 0 || c.BootstrapTerm != 0 || len(c.Removed) > 0 {
		switch {
		case !c.BootstrapFromState || len(c.Peers) == 0:
			return bad("BootstrapIndex, BootstrapTerm and Removed need BootstrapFromState and Peers")
		case c.BootstrapIndex != 0 && c.BootstrapIndex < uint64(len(c.Peers)):
			return bad("BootstrapIndex %d is below the %d peers", c.BootstrapIndex, len(c.Peers))
		case slices.Contains(c.Removed, 0) || slices.ContainsFunc(c.Removed, func(id uint64) bool { return slices.Contains(c.Peers, id) }):
			return bad("Removed holds 0 or a peer")
		}
		c.Removed = slices.Clone(c.Removed)
	}
	if c.TickInterval < 0 {
		return bad("TickInterval %v is negative", c.TickInterval)
	}
	if c.TickInterval == 0 {
		c.TickInterval = DefaultTickInterval
	}
	if c.ElectionTicks < 0 || c.HeartbeatTicks < 0 {
		return bad("ElectionTicks %d and HeartbeatTicks %d must not be negative", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.ElectionTicks == 0 {
		c.ElectionTicks = DefaultElectionTicks
	}
	if c.HeartbeatTicks == 0 {
		c.HeartbeatTicks = DefaultHeartbeatTicks
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		return bad("ElectionTicks %d must exceed HeartbeatTicks %d", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.ReproposeTicks < 0 {
		return bad("ReproposeTicks %d is negative", c.ReproposeTicks)
	}
	if c.ReproposeTicks == 0 {
		c.ReproposeTicks = min(3*c.HeartbeatTicks, c.ElectionTicks)
	}
	if c.SnapshotCount == 0 {
		c.SnapshotCount = DefaultSnapshotCount
	}
	if c.SnapshotCatchUpEntries == 0 {
		c.SnapshotCatchUpEntries = DefaultSnapshotCatchUpEntries
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = DefaultMaxSizePerMsg
	}
	if c.MaxInflightMsgs < 0 {
		return bad("MaxInflightMsgs %d is negative", c.MaxInflightMsgs)
	}
	if c.MaxInflightMsgs == 0 {
		c.MaxInflightMsgs = DefaultMaxInflightMsgs
	}
	if c.MaxInboundMsgs < 0 {
		return bad("MaxInboundMsgs %d is negative", c.MaxInboundMsgs)
	}
	if c.MaxInboundMsgs == 0 {
		c.MaxInboundMsgs = DefaultMaxInboundMsgs
	}
	if c.CloseTimeout < 0 {
		return bad("CloseTimeout %v is negative", c.CloseTimeout)
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = time.Duration(c.ElectionTicks) * c.TickInterval
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
