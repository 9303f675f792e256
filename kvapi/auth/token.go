package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// tokenProvider issues and resolves the tokens clients send after
// Authenticate. enable, disable, invalidateUser and assign are called on the
// apply goroutine; info, sign and genTokenPrefix from any goroutine.
type tokenProvider interface {
	// enable and disable follow AuthEnable and AuthDisable (and a restored
	// snapshot's state); disable drops every token the provider keeps.
	enable()
	disable()
	// invalidateUser drops the tokens of a deleted user or one whose
	// password changed.
	invalidateUser(name string)
	// genTokenPrefix returns the random part of the next simple token.
	genTokenPrefix() (string, error)
	// assign registers the token of an Authenticate applied at log index
	// index with the proposer's prefix, and returns it; "" if the token is
	// made by sign instead.
	assign(index uint64, prefix, user string) (string, error)
	// sign makes a token for user at auth revision rev.
	sign(user string, rev uint64) (string, error)
	// info resolves a token; rev is the current auth revision.
	info(ctx context.Context, token string, rev uint64) (*AuthInfo, bool)
	// applied learns the log index this member applied last.
	applied(index uint64)
}

// Token kinds of --auth-token.
const (
	TokenSimple = "simple"
	TokenJWT    = "jwt"
	TokenNone   = "none"
)

// JWT option names, as etcd's.
const (
	optSignMethod = "sign-method"
	optPublicKey  = "pub-key"
	optPrivateKey = "priv-key"
	optTTL        = "ttl"
)

// TokenOptions is a parsed --auth-token value.
type TokenOptions struct {
	// Kind is TokenSimple, TokenJWT or TokenNone (no tokens at all: clients
	// are known only by their certificates).
	Kind string
	// For TokenJWT: the signing method (jwt's names: RS256, ES256, EdDSA,
	// HS256, ...), the PEM key files (for HMAC methods, priv-key holds the
	// secret), and the lifetime of a token (default DefaultJWTTTL).
	SignMethod     string
	PublicKeyFile  string
	PrivateKeyFile string
	TTL            time.Duration
	// Unknown lists option names etcd would ignore (with a warning).
	Unknown []string
}

// ParseTokenOptions parses etcd's --auth-token syntax: a kind, then
// comma-separated name=value options. "" and "none" issue no tokens.
func ParseTokenOptions(s string) (TokenOptions, error) {
	parts := strings.Split(s, ",")
	o := TokenOptions{Kind: parts[0]}
	opts := map[string]string{}
	for _, p := range parts[1:] {
		name, value, ok := strings.Cut(p, "=")
		if !ok || strings.Contains(value, "=") {
			return TokenOptions{}, fmt.Errorf("%w: %q is not name=value", ErrInvalidAuthOpts, p)
		}
		if _, dup := opts[name]; dup {
			return TokenOptions{}, fmt.Errorf("%w: %q given twice", ErrInvalidAuthOpts, name)
		}
		opts[name] = value
	}
	switch o.Kind {
	case "", TokenNone:
		o.Kind = TokenNone
		return o, nil
	case TokenSimple:
		return o, nil
	case TokenJWT:
	default:
		return TokenOptions{}, fmt.Errorf("%w: unknown token kind %q", ErrInvalidAuthOpts, o.Kind)
	}
	for name, value := range opts {
		switch name {
		case optSignMethod:
			o.SignMethod = value
		case optPublicKey:
			o.PublicKeyFile = value
		case optPrivateKey:
			o.PrivateKeyFile = value
		case optTTL:
			ttl, err := time.ParseDuration(value)
			if err != nil || ttl <= 0 {
				return TokenOptions{}, fmt.Errorf("%w: ttl %q", ErrInvalidAuthOpts, value)
			}
			o.TTL = ttl
		default:
			o.Unknown = append(o.Unknown, name)
		}
	}
	if o.TTL == 0 {
		o.TTL = DefaultJWTTTL
	}
	if !knownSignMethod(o.SignMethod) {
		return TokenOptions{}, fmt.Errorf("%w: %w %q", ErrInvalidAuthOpts, ErrInvalidAuthMethod, o.SignMethod)
	}
	return o, nil
}

// newTokenProvider returns the provider the options ask for.
func newTokenProvider(o TokenOptions, cfg Config) (tokenProvider, error) {
	switch o.Kind {
	case TokenSimple:
		cfg.Logger.Warn("auth: simple tokens are not cryptographically signed")
		return newSimpleTokens(cfg.SimpleTokenTTL, cfg.Now), nil
	case TokenJWT:
		if len(o.Unknown) > 0 {
			cfg.Logger.Warn("auth: unknown JWT options", "options", o.Unknown)
		}
		return newJWTTokens(o, cfg.Now)
	default:
		return noTokens{}, nil
	}
}

// noTokens issues no tokens: Authenticate fails as etcd's fails with an
// empty --auth-token.
type noTokens struct{}

func (noTokens) enable()                         {}
func (noTokens) disable()                        {}
func (noTokens) invalidateUser(string)           {}
func (noTokens) genTokenPrefix() (string, error) { return "", nil }
func (noTokens) applied(uint64)                  {}
func (noTokens) assign(uint64, string, string) (string, error) {
	return "", nil
}
func (noTokens) sign(string, uint64) (string, error) { return "", ErrAuthFailed }
func (noTokens) info(context.Context, string, uint64) (*AuthInfo, bool) {
	return nil, false
}

// fingerprint identifies a token in logs without revealing it.
func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])[:12]
}
