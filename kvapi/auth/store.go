package auth

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/crypto/bcrypt"
)

// Defaults, as etcd's.
const (
	// DefaultBcryptCost is etcd's --bcrypt-cost default.
	DefaultBcryptCost = bcrypt.DefaultCost
	// DefaultSimpleTokenTTL is etcd's --auth-token-ttl default: a simple
	// token expires this long after it was last used.
	DefaultSimpleTokenTTL = 300 * time.Second
	// DefaultTokenOptions is etcd's --auth-token default.
	DefaultTokenOptions = "simple"
	// DefaultJWTTTL is the lifetime of a JWT without a ttl option.
	DefaultJWTTTL = 5 * time.Minute
)

// Config configures a Store. Zero values mean the defaults.
type Config struct {
	// TokenOptions is etcd's --auth-token: "simple" (default), or
	// "jwt,pub-key=FILE,priv-key=FILE,sign-method=METHOD[,ttl=DURATION]".
	// "none" issues no tokens at all: users are then known only by their
	// client certificates.
	TokenOptions string
	// SimpleTokenTTL is how long a simple token lives after its last use
	// (default DefaultSimpleTokenTTL).
	SimpleTokenTTL time.Duration
	// BcryptCost is the cost of the password hashes HashPassword makes
	// (default DefaultBcryptCost; bcrypt.MinCost to bcrypt.MaxCost).
	BcryptCost int
	// Now is the clock tokens expire by (default time.Now).
	Now func() time.Time
	// Logger receives auth state changes and refused credentials; never
	// passwords, and tokens only by fingerprint (nil = discard).
	Logger *slog.Logger
}

// Validate reports a configuration that cannot work. It changes nothing
// (key files are read by New).
func (c Config) Validate() error {
	if c.SimpleTokenTTL < 0 {
		return fmt.Errorf("auth: negative simple token TTL %v", c.SimpleTokenTTL)
	}
	if c.BcryptCost != 0 && (c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost) {
		return fmt.Errorf("auth: bcrypt cost %d outside [%d, %d]", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	_, err := ParseTokenOptions(c.tokenOptions())
	return err
}

func (c Config) tokenOptions() string {
	if c.TokenOptions == "" {
		return DefaultTokenOptions
	}
	return c.TokenOptions
}

func (c Config) withDefaults() Config {
	if c.SimpleTokenTTL == 0 {
		c.SimpleTokenTTL = DefaultSimpleTokenTTL
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = DefaultBcryptCost
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Store is the replicated auth state of one member (users, roles, whether
// authentication is enabled, the auth revision) with this member's tokens.
//
// The state changes only through the apply methods (AuthEnable, UserAdd, ...,
// Authenticate, Restore), which must be called from one goroutine in log
// order: given the same sequence, every member reaches the same state and
// the same answers. Everything else may be called from any goroutine and
// reads a consistent version of the state without locks.
type Store struct {
	cfg    Config
	log    *slog.Logger
	cur    atomic.Pointer[state]
	tokens tokenProvider
}

// New returns a store in etcd's initial state: authentication disabled, no
// users or roles, auth revision 1. It loads the JWT keys the token options
// name.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	opts, err := ParseTokenOptions(cfg.tokenOptions())
	if err != nil {
		return nil, err
	}
	tp, err := newTokenProvider(opts, cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{cfg: cfg, log: cfg.Logger, tokens: tp}
	s.cur.Store(newState())
	return s, nil
}

// BcryptCost is the cost HashPassword uses.
func (s *Store) BcryptCost() int { return s.cfg.BcryptCost }

// HashPassword returns the bcrypt hash of password, base64-encoded as etcd
// carries it in AuthUserAddRequest.HashedPassword and
// AuthUserChangePasswordRequest.HashedPassword. The member that receives a
// password hashes it before proposing, so no log entry or snapshot holds it.
func (s *Store) HashPassword(password string) (string, error) {
	return hashPassword(password, s.cfg.BcryptCost)
}

// Enabled reports whether authentication is enabled.
func (s *Store) Enabled() bool { return s.cur.Load().enabled }

// Revision returns the auth revision: it grows with every change of users,
// roles or permissions (and with AuthDisable), and credentials checked at
// an older revision are refused with ErrAuthOldRevision.
func (s *Store) Revision() uint64 { return s.cur.Load().revision }

// AuthStatus answers etcd's AuthStatus.
func (s *Store) AuthStatus() *pb.AuthStatusResponse {
	st := s.cur.Load()
	return &pb.AuthStatusResponse{Enabled: st.enabled, AuthRevision: st.revision}
}

// AuthInfo names who a request acts as: a user, and the auth revision at
// which its credentials were checked.
type AuthInfo struct {
	Username string
	Revision uint64
}

// AnyRevision as an AuthInfo's Revision passes every revision check. The
// member itself acts as the root user at AnyRevision (see RootInfo): the
// root user keeps the root role, and exists, as long as authentication is
// enabled, so no change of the auth state can make its requests stale.
const AnyRevision = ^uint64(0)

// RootInfo returns the identity of the member's own requests and of the
// embedding application's in-process client: the root user, at any
// revision.
func RootInfo() *AuthInfo { return &AuthInfo{Username: RootUser, Revision: AnyRevision} }

// AuthInfoFromToken returns whom a token names, or nil without error while
// authentication is disabled (tokens are then ignored, as etcd ignores
// them). An unknown, expired or badly signed token gives ErrInvalidAuthToken.
// A "Bearer " prefix is accepted, as etcd 3.7 accepts it. A simple token
// issued by a log entry this member has not applied yet is waited for, until
// ctx ends.
func (s *Store) AuthInfoFromToken(ctx context.Context, token string) (*AuthInfo, error) {
	st := s.cur.Load()
	if !st.enabled {
		return nil, nil
	}
	token = strings.TrimPrefix(token, "Bearer ")
	ai, ok := s.tokens.info(ctx, token, st.revision)
	if !ok {
		s.log.Debug("auth: invalid auth token", "token-fingerprint", fingerprint(token))
		return nil, ErrInvalidAuthToken
	}
	return ai, nil
}

// AuthInfoFromCommonName returns the identity of a client known by the
// common name of its verified certificate (etcd's --client-cert-auth), at
// the current revision; nil while authentication is disabled or for an
// empty name.
func (s *Store) AuthInfoFromCommonName(cn string) *AuthInfo {
	st := s.cur.Load()
	if !st.enabled || cn == "" {
		return nil
	}
	return &AuthInfo{Username: cn, Revision: st.revision}
}

// CheckPassword checks a user's password against the current state and
// returns the auth revision it was checked at (the caller proposes
// Authenticate and retries if the revision moved meanwhile, as etcd does).
// It runs bcrypt: it is slow by design and runs on the caller's goroutine.
func (s *Store) CheckPassword(name, password string) (uint64, error) {
	st := s.cur.Load()
	if !st.enabled {
		return 0, ErrAuthNotEnabled
	}
	u := st.users[name]
	if u == nil {
		return 0, ErrAuthFailed
	}
	if u.noPassword {
		return 0, ErrNoPasswordUser
	}
	if bcrypt.CompareHashAndPassword(u.password, []byte(password)) != nil {
		s.log.Info("auth: invalid password", "user", name)
		return 0, ErrAuthFailed
	}
	return st.revision, nil
}

// NewTokenPrefix returns the random part of a simple token, which the
// member proposing Authenticate chooses (InternalAuthenticateRequest's
// SimpleToken); "" for other token kinds.
func (s *Store) NewTokenPrefix() (string, error) { return s.tokens.genTokenPrefix() }

// Token returns the token for a granted authentication: the simple token
// every member registered when applying it, or a JWT signed now by this
// member (signing is costly, so only the member that proposed the request
// does it, off the apply path).
func (s *Store) Token(g *Grant) (string, error) {
	if g.token != "" {
		return g.token, nil
	}
	return s.tokens.sign(g.User, g.Revision)
}

// UserGet answers etcd's UserGet: the user's roles.
func (s *Store) UserGet(r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	u := s.cur.Load().users[r.Name]
	if u == nil {
		return nil, ErrUserNotFound
	}
	return &pb.AuthUserGetResponse{Roles: slices.Clone(u.roles)}, nil
}

// UserList answers etcd's UserList: every user name, sorted.
func (s *Store) UserList(*pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	st := s.cur.Load()
	names := make([]string, 0, len(st.users))
	for n := range st.users {
		names = append(names, n)
	}
	slices.Sort(names)
	return &pb.AuthUserListResponse{Users: names}, nil
}

// RoleGet answers etcd's RoleGet: the role's permissions; the root role
// shows the one permission that stands for all of them.
func (s *Store) RoleGet(r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	ro := s.cur.Load().roles[r.Role]
	if ro == nil {
		return nil, ErrRoleNotFound
	}
	if ro.name == RootRole {
		return &pb.AuthRoleGetResponse{Perm: []*authpb.Permission{rootPerm()}}, nil
	}
	resp := &pb.AuthRoleGetResponse{Perm: make([]*authpb.Permission, len(ro.perms))}
	for i, p := range ro.perms {
		resp.Perm[i] = p.toProto()
	}
	return resp, nil
}

// rootPerm is what RoleGet shows for the root role: read and write on
// everything.
func rootPerm() *authpb.Permission {
	return &authpb.Permission{PermType: authpb.Permission_READWRITE, Key: []byte{}, RangeEnd: []byte{0}}
}

// RoleList answers etcd's RoleList: every role name, sorted.
func (s *Store) RoleList(*pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	st := s.cur.Load()
	names := make([]string, 0, len(st.roles))
	for n := range st.roles {
		names = append(names, n)
	}
	slices.Sort(names)
	return &pb.AuthRoleListResponse{Roles: names}, nil
}

// HasRole reports whether user exists and holds role.
func (s *Store) HasRole(user, role string) bool {
	u := s.cur.Load().users[user]
	return u != nil && u.hasRole(role)
}

// Applied tells the store the log index this member applied last, so that a
// simple token issued by a later entry is waited for rather than refused.
// Call it on the apply goroutine after each entry (cheap).
func (s *Store) Applied(index uint64) { s.tokens.applied(index) }

// StaleRead reports ErrAuthOldRevision if the auth revision is no longer the
// one ai was checked at: etcd refuses a read served while the auth state
// changed. Requests without credentials, and the member's own, are never
// stale.
func (s *Store) StaleRead(ai *AuthInfo) error {
	if ai == nil || ai.Revision == 0 || ai.Revision == AnyRevision {
		return nil
	}
	if ai.Revision != s.Revision() {
		return ErrAuthOldRevision
	}
	return nil
}
