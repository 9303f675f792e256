package meshkv

import (
	"time"

	"github.com/meshkv/meshkv/kvapi"
	"github.com/meshkv/meshkv/kvapi/auth"
)

// Defaults of [Config] fields, as etcd's flags have them. The zero value of a
// field means its default; these are for callers that show or compare them,
// such as the meshkv binary's --help.
const (
	// DefaultMaxRequestBytes is etcd's --max-request-bytes default.
	DefaultMaxRequestBytes = kvapi.DefaultMaxRequestBytes
	// DefaultMaxTxnOps is etcd's --max-txn-ops default.
	DefaultMaxTxnOps = kvapi.DefaultMaxTxnOps
	// DefaultQuotaBytes is etcd's --quota-backend-bytes default.
	DefaultQuotaBytes = kvapi.DefaultQuotaBytes
	// DefaultWatchProgressNotifyInterval is etcd's
	// --watch-progress-notify-interval default.
	DefaultWatchProgressNotifyInterval = kvapi.DefaultWatchProgressNotifyInterval

	// DefaultAuthToken is etcd's --auth-token default ("simple").
	DefaultAuthToken = auth.DefaultTokenOptions
	// AuthTokenNone turns tokens off: clients are known by their
	// certificate's common name only.
	AuthTokenNone = auth.TokenNone
	// DefaultAuthTokenTTL is etcd's --auth-token-ttl default.
	DefaultAuthTokenTTL time.Duration = auth.DefaultSimpleTokenTTL
	// DefaultBcryptCost is etcd's --bcrypt-cost default.
	DefaultBcryptCost = auth.DefaultBcryptCost

	// APIVersion is the etcd API version meshkv serves, as clients see it
	// in Status and /version.
	APIVersion = kvapi.ServerVersion
)
