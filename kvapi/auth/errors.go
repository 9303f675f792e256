package auth

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Errors of the auth store. Their messages are etcd's, and GRPCError maps
// them to the gRPC errors etcd sends for them.
var (
	// ErrRootUserNotExist: AuthEnable without a user named root.
	ErrRootUserNotExist = errors.New("auth: root user does not exist")
	// ErrRootRoleNotExist: AuthEnable while the root user lacks the root role.
	ErrRootRoleNotExist = errors.New("auth: root user does not have root role")
	// ErrUserAlreadyExist: UserAdd of a name in use.
	ErrUserAlreadyExist = errors.New("auth: user already exists")
	// ErrUserEmpty: UserAdd without a name, or a request without a user
	// while authentication is enabled.
	ErrUserEmpty = errors.New("auth: user name is empty")
	// ErrUserNotFound: a user operation on a name that does not exist.
	ErrUserNotFound = errors.New("auth: user not found")
	// ErrRoleAlreadyExist: RoleAdd of a name in use.
	ErrRoleAlreadyExist = errors.New("auth: role already exists")
	// ErrRoleNotFound: a role operation on a name that does not exist.
	ErrRoleNotFound = errors.New("auth: role not found")
	// ErrRoleEmpty: RoleAdd without a name.
	ErrRoleEmpty = errors.New("auth: role name is empty")
	// ErrPermissionNotGiven: RoleGrantPermission without a permission.
	ErrPermissionNotGiven = errors.New("auth: permission not given")
	// ErrAuthFailed: wrong user name or password.
	ErrAuthFailed = errors.New("auth: authentication failed, invalid user ID or password")
	// ErrNoPasswordUser: a password given for a user created without one.
	ErrNoPasswordUser = errors.New("auth: authentication failed, password was given for no password user")
	// ErrPermissionDenied: the user's roles do not allow the request.
	ErrPermissionDenied = errors.New("auth: permission denied")
	// ErrRoleNotGranted: UserRevokeRole of a role the user does not have.
	ErrRoleNotGranted = errors.New("auth: role is not granted to the user")
	// ErrPermissionNotGranted: RoleRevokePermission of a permission the role
	// does not have.
	ErrPermissionNotGranted = errors.New("auth: permission is not granted to the role")
	// ErrAuthNotEnabled: Authenticate while authentication is disabled.
	ErrAuthNotEnabled = errors.New("auth: authentication is not enabled")
	// ErrAuthOldRevision: the request's credentials were checked at an auth
	// revision older than the store's; the client authenticates again.
	ErrAuthOldRevision = errors.New("auth: revision in header is old")
	// ErrInvalidAuthToken: a token that is unknown, expired or badly signed.
	ErrInvalidAuthToken = errors.New("auth: invalid auth token")
	// ErrInvalidAuthOpts: a malformed token option string.
	ErrInvalidAuthOpts = errors.New("auth: invalid auth options")
	// ErrInvalidAuthMgmt: an operation that would lock out the root user
	// while authentication is enabled, or an invalid permission range.
	ErrInvalidAuthMgmt = errors.New("auth: invalid auth management")
	// ErrInvalidAuthMethod: an unknown JWT signing method.
	ErrInvalidAuthMethod = errors.New("auth: invalid auth signature method")
	// ErrMissingKey: JWT options without the key the method needs.
	ErrMissingKey = errors.New("auth: missing key data")
	// ErrKeyMismatch: JWT public and private keys that do not belong together.
	ErrKeyMismatch = errors.New("auth: public and private keys don't match")
	// ErrVerifyOnly: Authenticate on a member that has only a JWT public key.
	ErrVerifyOnly = errors.New("auth: token signing attempted with verify-only key")
)

// grpcErrors maps the errors above to the gRPC errors etcd sends for them.
// Errors missing here (ErrNoPasswordUser, ErrVerifyOnly, ...) reach etcd's
// clients with code Unknown and their own message, as etcd sends them.
var grpcErrors = map[error]error{
	ErrRootUserNotExist:     rpctypes.ErrGRPCRootUserNotExist,
	ErrRootRoleNotExist:     rpctypes.ErrGRPCRootRoleNotExist,
	ErrUserAlreadyExist:     rpctypes.ErrGRPCUserAlreadyExist,
	ErrUserEmpty:            rpctypes.ErrGRPCUserEmpty,
	ErrUserNotFound:         rpctypes.ErrGRPCUserNotFound,
	ErrRoleAlreadyExist:     rpctypes.ErrGRPCRoleAlreadyExist,
	ErrRoleNotFound:         rpctypes.ErrGRPCRoleNotFound,
	ErrRoleEmpty:            rpctypes.ErrGRPCRoleEmpty,
	ErrAuthFailed:           rpctypes.ErrGRPCAuthFailed,
	ErrPermissionNotGiven:   rpctypes.ErrGRPCPermissionNotGiven,
	ErrPermissionDenied:     rpctypes.ErrGRPCPermissionDenied,
	ErrRoleNotGranted:       rpctypes.ErrGRPCRoleNotGranted,
	ErrPermissionNotGranted: rpctypes.ErrGRPCPermissionNotGranted,
	ErrAuthNotEnabled:       rpctypes.ErrGRPCAuthNotEnabled,
	ErrInvalidAuthToken:     rpctypes.ErrGRPCInvalidAuthToken,
	ErrInvalidAuthMgmt:      rpctypes.ErrGRPCInvalidAuthMgmt,
	ErrAuthOldRevision:      rpctypes.ErrGRPCAuthOldRevision,
}

// GRPCError returns the gRPC error etcd sends for err (one of the errors
// above, possibly wrapped), and false for errors etcd sends as code Unknown
// with their own message.
func GRPCError(err error) (error, bool) {
	for {
		if g, ok := grpcErrors[err]; ok {
			return g, true
		}
		if err = errors.Unwrap(err); err == nil {
			return nil, false
		}
	}
}
