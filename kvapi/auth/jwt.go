package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// JWT tokens, as etcd's: claims "username", "revision" and "exp", signed by
// the member that handled Authenticate with the configured key. Any member
// with the same (public) key verifies them; a member with only the public
// key verifies but cannot issue (ErrVerifyOnly).
//
// Verifying a signature on every request costs tens of microseconds (RSA,
// ECDSA), so verified tokens are cached until they expire: a token is
// immutable and so is the key, so a cached answer stays right. Failures are
// not cached.

// maxJWTCache bounds the verified tokens kept; the cache is emptied when it
// is full.
const maxJWTCache = 1 << 14

// knownSignMethod reports whether name is a JWT signing method etcd supports.
func knownSignMethod(name string) bool {
	switch jwt.GetSigningMethod(name).(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS, *jwt.SigningMethodECDSA,
		*jwt.SigningMethodEd25519, *jwt.SigningMethodHMAC:
		return true
	}
	return false
}

type jwtTokens struct {
	method     jwt.SigningMethod
	signKey    any // nil when verify-only
	verifyKey  any
	ttl        time.Duration
	now        func() time.Time
	parser     *jwt.Parser
	cache      sync.Map // token -> *jwtEntry
	cacheSize  atomic.Int64
	cacheClear sync.Mutex
}

type jwtEntry struct {
	ai  AuthInfo
	exp time.Time // zero: the token does not expire
}

var _ tokenProvider = (*jwtTokens)(nil)

func newJWTTokens(o TokenOptions, now func() time.Time) (*jwtTokens, error) {
	var pub, priv []byte
	var err error
	if o.PublicKeyFile != "" {
		if pub, err = os.ReadFile(o.PublicKeyFile); err != nil {
			return nil, fmt.Errorf("%w: JWT public key: %w", ErrInvalidAuthOpts, err)
		}
	}
	if o.PrivateKeyFile != "" {
		if priv, err = os.ReadFile(o.PrivateKeyFile); err != nil {
			return nil, fmt.Errorf("%w: JWT private key: %w", ErrInvalidAuthOpts, err)
		}
	}
	t := &jwtTokens{method: jwt.GetSigningMethod(o.SignMethod), ttl: o.TTL, now: now}
	if t.signKey, t.verifyKey, err = jwtKeys(t.method, pub, priv); err != nil {
		return nil, err
	}
	t.parser = jwt.NewParser(jwt.WithValidMethods([]string{t.method.Alg()}), jwt.WithTimeFunc(now))
	return t, nil
}

// jwtKeys parses the keys for method: the signing key (nil if only a public
// key was given) and the verifying key.
func jwtKeys(method jwt.SigningMethod, pub, priv []byte) (sign, verify any, err error) {
	if _, ok := method.(*jwt.SigningMethodHMAC); ok {
		if len(priv) == 0 {
			return nil, nil, ErrMissingKey
		}
		return priv, priv, nil
	}
	var parsePriv func([]byte) (crypto.Signer, error)
	var parsePub func([]byte) (crypto.PublicKey, error)
	switch method.(type) {
	case *jwt.SigningMethodRSA, *jwt.SigningMethodRSAPSS:
		parsePriv = func(b []byte) (crypto.Signer, error) { return jwt.ParseRSAPrivateKeyFromPEM(b) }
		parsePub = func(b []byte) (crypto.PublicKey, error) { return jwt.ParseRSAPublicKeyFromPEM(b) }
	case *jwt.SigningMethodECDSA:
		parsePriv = func(b []byte) (crypto.Signer, error) { return jwt.ParseECPrivateKeyFromPEM(b) }
		parsePub = func(b []byte) (crypto.PublicKey, error) { return jwt.ParseECPublicKeyFromPEM(b) }
	case *jwt.SigningMethodEd25519:
		parsePriv = func(b []byte) (crypto.Signer, error) {
			k, err := jwt.ParseEdPrivateKeyFromPEM(b)
			if err != nil {
				return nil, err
			}
			return k.(ed25519.PrivateKey), nil
		}
		parsePub = jwt.ParseEdPublicKeyFromPEM
	default:
		return nil, nil, fmt.Errorf("%w: %q", ErrInvalidAuthMethod, method.Alg())
	}
	var signer crypto.Signer
	var public crypto.PublicKey
	if len(priv) > 0 {
		if signer, err = parsePriv(priv); err != nil {
			return nil, nil, fmt.Errorf("auth: JWT private key: %w", err)
		}
	}
	if len(pub) > 0 {
		if public, err = parsePub(pub); err != nil {
			return nil, nil, fmt.Errorf("auth: JWT public key: %w", err)
		}
	}
	switch {
	case signer == nil && public == nil:
		return nil, nil, ErrMissingKey
	case signer == nil:
		return nil, public, nil
	case public != nil && !publicKeyEqual(public, signer.Public()):
		return nil, nil, ErrKeyMismatch
	}
	// The key the library signs with is the private key's own type.
	switch k := signer.(type) {
	case *rsa.PrivateKey:
		return k, &k.PublicKey, nil
	case *ecdsa.PrivateKey:
		return k, &k.PublicKey, nil
	case ed25519.PrivateKey:
		return k, k.Public(), nil
	}
	return nil, nil, fmt.Errorf("%w: unexpected key type %T", ErrInvalidAuthMethod, signer)
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func (t *jwtTokens) enable()                                       {}
func (t *jwtTokens) disable()                                      {}
func (t *jwtTokens) invalidateUser(string)                         {}
func (t *jwtTokens) genTokenPrefix() (string, error)               { return "", nil }
func (t *jwtTokens) applied(uint64)                                {}
func (t *jwtTokens) assign(uint64, string, string) (string, error) { return "", nil }

func (t *jwtTokens) sign(user string, rev uint64) (string, error) {
	if t.signKey == nil {
		return "", ErrVerifyOnly
	}
	tk := jwt.NewWithClaims(t.method, jwt.MapClaims{
		"username": user,
		"revision": rev,
		"exp":      t.now().Add(t.ttl).Unix(),
	})
	return tk.SignedString(t.signKey)
}

func (t *jwtTokens) info(_ context.Context, token string, _ uint64) (*AuthInfo, bool) {
	if v, ok := t.cache.Load(token); ok {
		e := v.(*jwtEntry)
		if e.exp.IsZero() || t.now().Before(e.exp) {
			ai := e.ai
			return &ai, true
		}
		t.cache.Delete(token)
		return nil, false
	}
	parsed, err := t.parser.Parse(token, func(*jwt.Token) (any, error) { return t.verifyKey, nil })
	if err != nil || !parsed.Valid {
		return nil, false
	}
	claims, ok := parsed.Claims.(jwt.MapClaims)
	if !ok {
		return nil, false
	}
	user, ok := claims["username"].(string)
	if !ok {
		return nil, false
	}
	rev, ok := claims["revision"].(float64)
	if !ok {
		return nil, false
	}
	e := &jwtEntry{ai: AuthInfo{Username: user, Revision: uint64(rev)}}
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		e.exp = exp.Time
	}
	t.remember(token, e)
	ai := e.ai
	return &ai, true
}

// remember caches a verified token, emptying the cache when it is full.
func (t *jwtTokens) remember(token string, e *jwtEntry) {
	if t.cacheSize.Add(1) > maxJWTCache {
		t.cacheClear.Lock()
		if t.cacheSize.Load() > maxJWTCache {
			t.cache.Clear()
			t.cacheSize.Store(1)
		}
		t.cacheClear.Unlock()
	}
	if _, loaded := t.cache.LoadOrStore(token, e); loaded {
		t.cacheSize.Add(-1)
	}
}
