// Package membership decides how a meshkv cluster repairs its own raft
// membership: the leader adds nodes that ask to join as learners, promotes
// caught-up learners up to the target voter count, replaces and removes
// dead members, and members that the cluster removed stop. It also plans
// the operator's recovery of a cluster that lost its quorum.
//
// The Planner is pure: a View in (raft's applied state and the leader's
// progress, the transport's peers with their own signed statements,
// attributable notices), a Decision out (at most one membership change),
// on logical time the caller passes. No goroutines, no clock, no I/O; a
// given sequence of steps always yields the same decisions. The Loop runs a
// Planner against a live node through two small interfaces (Source,
// Actuator); it runs on its caller's goroutine and owns none.
//
// # Rules, and why
//
// Voter count. The applied voter count is never even: an even count
// tolerates no more failures than the odd count below it and needs a larger
// quorum, and a 2-voter cluster whose second voter dies can never change its
// membership again (no quorum to commit the change). So growth promotes two
// learners at once (1 → 3, 3 → 5), a dead or leaving voter is removed in the
// same change that promotes its replacement, and a single dead voter without
// a replacement is kept. Several dead voters are removed at once when the
// result is odd and tolerates more failures (5 with 2 dead → 3). Every
// change with several operations is one raft ConfChangeV2 applied with
// joint consensus, so no intermediate configuration is ever applied. An
// even count made by an operator is repaired by the next change (promote a
// caught-up learner, else demote a voter). Among all valid changes the
// planner picks the best by: odd count, healthy voters beyond a quorum,
// fewer dead or leaving voters kept, closeness to the target, fewer
// operations; it proposes nothing unless that beats the configuration as is.
//
// Caught up. A learner is promoted only after it acknowledged the commit
// index of one ActiveWindow ago (which must be nonzero), was heard from
// within ActiveWindow, and kept both up for CatchUpFor. A learner that
// acknowledged nothing is never caught up, however young the cluster
// ("within 100 entries of the commit index" once let a learner that had
// acknowledged nothing become the second voter). Comparing with the commit
// index of a moment ago tolerates entries in flight under steady writes.
//
// Dead voters. A voter is dead only when the leader itself has not heard
// from it for DeadMemberTimeout and a majority of the voters (the leader
// included) state it is unreachable, each in its own signed, unexpired
// transport entry, or its own entry expired in the leader's view (gossip is
// relayed by every node, so it then reached none of the active quorum every
// change needs; transports list as unreachable only peers whose entries
// they hold, so after the expiry nobody would report it). No removal rests on a minority's word or on gossip about
// others, and a peer that calls everyone unreachable removes nobody the
// leader still hears. Progress is per leader term: a new leader starts its
// timers afresh.
//
// Learners and joiners. A node is added as a learner only while our own
// probes reach it, its unexpired entry asks to join our cluster, and its id
// was never removed (ids are never reused, so a removed id asking again is
// a stale or replayed entry). A learner the leader has not heard from for
// DeadMemberTimeout is removed, which also evicts a node that asked to join
// but never acknowledged anything. Learners are capped at MaxLearners.
//
// Leaving. A node that shuts down gracefully announces it in its entry; a
// leaving voter counts as gone for the replacement rules above, a leaving
// learner is removed at once. A leaving leader hands leadership to the
// most caught-up active voter first; a leaving sole voter hands the cluster
// to a caught-up learner in one joint change (promote it, remove itself).
//
// One change at a time. Nothing is proposed while raft may hold an
// unapplied change (ConfChangePending) or while fewer than a quorum of the
// voters are active: such a change could not commit.
//
// Stopping. A node stops (Decision.Exit) when its own applied log removed
// it, or a member of its own applied configuration tells it, over the
// transport's authenticated paths, that it applied its removal (committed
// state, so one such notice is proof), or, while it is not yet in its own
// configuration, a member of the cluster it joins (as that member's own
// signed, unexpired entry says) tells it so. A leader's gossip that omits
// the node, a peer that does not know it, a node of another cluster, or a
// peer's claims about leaders, terms or member lists never stop it. A
// member without a leader for QueryAfter asks the members of its
// configuration (Decision.Query); their answers come back as Notices.
// Members of the cluster answer a removed member's raft traffic with a
// removal notice (Controller.Gate) instead of passing it to raft.
//
// # Recovering a lost quorum
//
// When a majority of the voters is gone for good, no membership change can
// commit and the cluster cannot heal itself. The operator then recovers it
// from one survivor, as etcd's --force-new-cluster does from a data
// directory, keeping that survivor's state machine (Controller.Recover;
// the meshkv binary calls it on SIGUSR2, embedders through Node.Recover):
//
//  1. The survivor surveys its configuration: a membership query to every
//     member, answered from each one's applied state (cluster id, applied
//     index, known leader), collected for up to two seconds.
//  2. PlanRecovery refuses unless the quorum is really lost as far as the
//     survivor can tell: no leader known to it or to any member that
//     answered, for at least QueryAfter, and fewer than a majority of the
//     voters answering (ErrLeaderKnown, ErrTooSoon, ErrQuorumReachable);
//     and, unless forced, unless it applied the most of all that answered
//     (ErrNotHighest; ties go to the higher member id, so two survivors
//     recovered at once cannot both succeed).
//  3. The Run goroutine, between two rounds, has the caller restart the raft
//     member (ControllerConfig.Recover) as the only voter of a new
//     configuration: a raft snapshot of its state machine at its applied
//     index (unapplied entries are dropped: they were not known to be
//     committed), under a new cluster id that supersedes the old one. The
//     new id keeps the old and the new cluster apart on the mesh (the
//     transport drops traffic between cluster ids), so logs that diverged
//     can never mix; the node publishes the superseded id, and bootstrap
//     sends new nodes to the superseding cluster. Every other member of the
//     old configuration is recorded as removed.
//  4. The other survivors of the old configuration hear nothing from the
//     recovered cluster (no gossip ever stops a node); the operator
//     restarts them and they join the recovered cluster as new members,
//     which the leader grows back to the target.
//
// Only whoever can signal the process (or the embedding application) can
// start a recovery; nothing on the network can. Recovery cannot tell a
// dead majority from a partitioned one that it cannot reach: if the
// "dead" voters are in fact alive behind a partition and still hold their
// quorum, the recovered cluster is a second cluster (under another id,
// reported as a conflict, never merged). Recover only when the other
// voters are known to be gone.
package membership
