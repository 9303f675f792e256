// Package auth is etcd's authentication and role-based access control, as
// etcd 3.6 and 3.7 implement it, for meshkv's replicated state machine.
//
// # What it holds
//
// A Store holds the replicated auth state: whether authentication is
// enabled, the auth revision, users (bcrypt password hash, roles) and roles
// (key permissions: READ, WRITE or READWRITE on one key, a range [key, end),
// or everything from a key on, end "\x00"). The user and the role named
// "root" are special: the root role permits everything, including the admin
// operations; authentication can only be enabled while a root user holding
// it exists, and neither can be removed while it is enabled.
//
// It also holds this member's tokens: simple tokens (random, registered on
// every member, expiring a TTL after their last use) or JWTs (signed,
// carrying user and auth revision), chosen by etcd's --auth-token syntax
// (ParseTokenOptions).
//
// # Contract
//
// The state changes only through the apply methods (AuthEnable, UserAdd,
// ..., Authenticate, Restore), called by the replicated log's apply goroutine
// in log order after the caller's admin check (Checker.IsAdminPermitted, or
// CheckUserGet and CheckRoleGet for the two reads a user may make about
// itself). They are deterministic: the same sequence gives every member the
// same state, answers and snapshot bytes. A method that fails changes
// nothing. Passwords never enter the log: the member that receives one
// hashes it first (Store.HashPassword), and Authenticate is proposed after
// the password was checked (Store.CheckPassword), without it.
//
// Every other method may be called from any goroutine. The state is
// immutable once published (copy on write): readers load the current version
// with one atomic load, and a Checker holds one version for a series of
// checks. Each change rebuilds, for the users it affects, the union of
// their roles' key ranges as sorted disjoint intervals, so a permission check
// is a map lookup and a binary search, without locks or allocation.
//
// Permission checks follow etcd's rules (see check.go): writes are checked
// when applied, against the state at their place in the log; reads when
// served; credentials checked at an auth revision older than the store's are
// refused with ErrAuthOldRevision, so that a permission change takes effect
// for requests already under way.
//
// Errors are sentinel values with etcd's messages; GRPCError gives the
// gRPC error etcd sends for each.
//
// # Goroutines
//
// None. Expired simple tokens are dropped when looked up, and swept at most
// once a second when tokens are issued.
package auth
