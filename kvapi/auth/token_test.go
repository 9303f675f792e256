package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// enabledStoreWith is enabledStore with a config.
func enabledStoreWith(t *testing.T, cfg Config) *Store {
	t.Helper()
	s := newTestStore(t, cfg)
	addUser(t, s, "root", "root")
	addUser(t, s, "u", "u")
	must[*pb.AuthUserGrantRoleResponse](t)(s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"}))
	must[*pb.AuthEnableResponse](t)(s.AuthEnable())
	return s
}

// login applies an Authenticate for user at index and returns the token.
func login(t *testing.T, s *Store, index uint64, user string) string {
	t.Helper()
	prefix, err := s.NewTokenPrefix()
	if err != nil {
		t.Fatal(err)
	}
	g, err := s.Authenticate(index, &pb.InternalAuthenticateRequest{Name: user, SimpleToken: prefix})
	if err != nil {
		t.Fatalf("Authenticate: %v", err)
	}
	s.Applied(index)
	tok, err := s.Token(g)
	if err != nil {
		t.Fatalf("Token: %v", err)
	}
	return tok
}

func TestSimpleTokenExpiry(t *testing.T) {
	clk := newFakeClock()
	s := enabledStoreWith(t, Config{SimpleTokenTTL: 10 * time.Second, Now: clk.Now})
	ctx := context.Background()
	tok := login(t, s, 5, "u")
	if !strings.HasSuffix(tok, ".5") || len(tok) != simpleTokenPrefixLen+2 {
		t.Fatalf("token %q, want <16 letters>.5", tok)
	}
	valid := func(when string) {
		t.Helper()
		ai, err := s.AuthInfoFromToken(ctx, tok)
		if err != nil || ai.Username != "u" || ai.Revision != s.Revision() {
			t.Fatalf("%s: %+v, %v", when, ai, err)
		}
	}
	valid("fresh")
	clk.Advance(9 * time.Second)
	valid("after 9s") // refreshes: now lives until 19s (+1s resolution)
	clk.Advance(10*time.Second + 500*time.Millisecond)
	valid("10.5s after its last use") // within the resolution; refreshed again
	clk.Advance(11*time.Second + time.Millisecond)
	if _, err := s.AuthInfoFromToken(ctx, tok); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("11s after its last use: %v, want ErrInvalidAuthToken", err)
	}
}

func TestSimpleTokenInvalidation(t *testing.T) {
	s := enabledStoreWith(t, Config{})
	ctx := context.Background()
	tu, troot := login(t, s, 7, "u"), login(t, s, 8, "root")
	if ai, err := s.AuthInfoFromToken(ctx, "Bearer "+tu); err != nil || ai.Username != "u" {
		t.Fatalf("Bearer token: %+v, %v", ai, err)
	}
	for _, bad := range []string{"", "abc", "a.b", "a.1.2", ".7", strings.Replace(tu, ".7", ".6", 1), "x" + tu} {
		if _, err := s.AuthInfoFromToken(ctx, bad); !errors.Is(err, ErrInvalidAuthToken) {
			t.Errorf("token %q: %v, want ErrInvalidAuthToken", bad, err)
		}
	}
	h := must[string](t)(s.HashPassword("new"))
	must[*pb.AuthUserChangePasswordResponse](t)(s.UserChangePassword(&pb.AuthUserChangePasswordRequest{Name: "u", HashedPassword: h}))
	if _, err := s.AuthInfoFromToken(ctx, tu); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("after a password change: %v", err)
	}
	if _, err := s.AuthInfoFromToken(ctx, troot); err != nil {
		t.Errorf("another user's token after a password change: %v", err)
	}
	tu = login(t, s, 9, "u")
	must[*pb.AuthUserDeleteResponse](t)(s.UserDelete(&pb.AuthUserDeleteRequest{Name: "u"}))
	if _, err := s.AuthInfoFromToken(ctx, tu); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("after deleting the user: %v", err)
	}
	must[*pb.AuthDisableResponse](t)(s.AuthDisable())
	if ai, err := s.AuthInfoFromToken(ctx, troot); ai != nil || err != nil {
		t.Errorf("while disabled: %+v, %v; want tokens ignored", ai, err)
	}
	must[*pb.AuthEnableResponse](t)(s.AuthEnable())
	if _, err := s.AuthInfoFromToken(ctx, troot); !errors.Is(err, ErrInvalidAuthToken) {
		t.Errorf("after disable and enable: %v; want tokens dropped", err)
	}
}

// TestSimpleTokenWaitsForItsEntry checks that a token issued at an index this
// member has not applied yet is waited for, up to the bound.
func TestSimpleTokenWaitsForItsEntry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := enabledStoreWith(t, Config{})
		s.Applied(10)
		prefix := must[string](t)(s.NewTokenPrefix())
		tok := prefix + ".11"
		type res struct {
			ai  *AuthInfo
			err error
		}
		done := make(chan res, 1)
		go func() {
			ai, err := s.AuthInfoFromToken(context.Background(), tok)
			done <- res{ai, err}
		}()
		synctest.Wait() // the lookup is waiting
		g := must[*Grant](t)(s.Authenticate(11, &pb.InternalAuthenticateRequest{Name: "u", SimpleToken: prefix}))
		s.Applied(11)
		if r := <-done; r.err != nil || r.ai.Username != "u" {
			t.Fatalf("waited lookup: %+v, %v", r.ai, r.err)
		}
		_ = g

		// Never applied: refused after the bound.
		start := time.Now()
		if _, err := s.AuthInfoFromToken(context.Background(), prefix+".99"); !errors.Is(err, ErrInvalidAuthToken) {
			t.Fatalf("token from the future: %v", err)
		}
		if waited := time.Since(start); waited != simpleTokenWait {
			t.Fatalf("waited %v, want %v", waited, simpleTokenWait)
		}
		// Or when the request ends first.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start = time.Now()
		if _, err := s.AuthInfoFromToken(ctx, prefix+".99"); !errors.Is(err, ErrInvalidAuthToken) {
			t.Fatalf("token from the future, short ctx: %v", err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Fatalf("waited %v, want 1s", waited)
		}
		if n := s.tokens.(*simpleTokens).waiting.Load(); n != 0 {
			t.Fatalf("%d waiters left", n)
		}
	})
}

func TestNoTokens(t *testing.T) {
	s := enabledStoreWith(t, Config{TokenOptions: "none"})
	g := must[*Grant](t)(s.Authenticate(3, &pb.InternalAuthenticateRequest{Name: "u"}))
	if _, err := s.Token(g); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("Token without a provider: %v, want ErrAuthFailed", err)
	}
	if ai := s.AuthInfoFromCommonName("u"); ai == nil || ai.Username != "u" || ai.Revision != s.Revision() {
		t.Fatalf("common name: %+v", ai)
	}
}

// writeKeys writes a PEM key pair for method into dir.
func writeKeys(t *testing.T, dir, method string) (pub, priv string) {
	t.Helper()
	var privDER, pubDER []byte
	var err error
	switch {
	case strings.HasPrefix(method, "HS"):
		priv = filepath.Join(dir, method+".secret")
		if err := os.WriteFile(priv, []byte("a shared secret of some length"), 0o600); err != nil {
			t.Fatal(err)
		}
		return "", priv
	case strings.HasPrefix(method, "RS"), strings.HasPrefix(method, "PS"):
		k, err := rsa.GenerateKey(rand.Reader, 1024) // small: tests only
		if err != nil {
			t.Fatal(err)
		}
		privDER = x509.MarshalPKCS1PrivateKey(k)
		pubDER, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		priv = writePEM(t, dir, method+".key", "RSA PRIVATE KEY", privDER)
	case strings.HasPrefix(method, "ES"):
		curve := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}[method]
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if privDER, err = x509.MarshalECPrivateKey(k); err != nil {
			t.Fatal(err)
		}
		if pubDER, err = x509.MarshalPKIXPublicKey(&k.PublicKey); err != nil {
			t.Fatal(err)
		}
		priv = writePEM(t, dir, method+".key", "EC PRIVATE KEY", privDER)
	case method == "EdDSA":
		pk, sk, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if privDER, err = x509.MarshalPKCS8PrivateKey(sk); err != nil {
			t.Fatal(err)
		}
		if pubDER, err = x509.MarshalPKIXPublicKey(pk); err != nil {
			t.Fatal(err)
		}
		priv = writePEM(t, dir, method+".key", "PRIVATE KEY", privDER)
	}
	_ = err
	pub = writePEM(t, dir, method+".pub", "PUBLIC KEY", pubDER)
	return pub, priv
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestJWT(t *testing.T) {
	dir := t.TempDir()
	for _, method := range []string{"RS256", "PS384", "ES256", "ES512", "EdDSA", "HS256"} {
		t.Run(method, func(t *testing.T) {
			pub, priv := writeKeys(t, dir, method)
			clk := newFakeClock()
			opts := "jwt,sign-method=" + method + ",priv-key=" + priv + ",ttl=1m"
			if pub != "" {
				opts += ",pub-key=" + pub
			}
			s := enabledStoreWith(t, Config{TokenOptions: opts, Now: clk.Now})
			ctx := context.Background()
			tok := login(t, s, 4, "u")
			if strings.Count(tok, ".") != 2 {
				t.Fatalf("token %q is not a JWT", tok)
			}
			for range 2 { // verified, then cached
				ai, err := s.AuthInfoFromToken(ctx, tok)
				if err != nil || ai.Username != "u" || ai.Revision != s.Revision() {
					t.Fatalf("verify: %+v, %v", ai, err)
				}
			}
			// A change of the auth state leaves the token's revision behind.
			addUser(t, s, "v", "v")
			ai, err := s.AuthInfoFromToken(ctx, tok)
			if err != nil || ai.Revision != s.Revision()-1 {
				t.Fatalf("after a change: %+v, %v; want the token's own revision", ai, err)
			}
			if err := s.Checker().IsRangePermitted(ai, []byte("k"), nil); !errors.Is(err, ErrAuthOldRevision) {
				t.Fatalf("stale token: %v, want ErrAuthOldRevision", err)
			}
			tampered := tok[:len(tok)-4] + flip(tok[len(tok)-4:])
			if _, err := s.AuthInfoFromToken(ctx, tampered); !errors.Is(err, ErrInvalidAuthToken) {
				t.Fatalf("tampered token: %v", err)
			}
			if pub != "" {
				vo := enabledStoreWith(t, Config{TokenOptions: "jwt,sign-method=" + method + ",pub-key=" + pub, Now: clk.Now})
				if ai, err := vo.AuthInfoFromToken(ctx, tok); err != nil || ai.Username != "u" {
					t.Fatalf("verify-only member: %+v, %v", ai, err)
				}
				g := must[*Grant](t)(vo.Authenticate(9, &pb.InternalAuthenticateRequest{Name: "u"}))
				if _, err := vo.Token(g); !errors.Is(err, ErrVerifyOnly) {
					t.Fatalf("verify-only member signing: %v", err)
				}
			}
			clk.Advance(time.Minute)
			if _, err := s.AuthInfoFromToken(ctx, tok); !errors.Is(err, ErrInvalidAuthToken) {
				t.Fatalf("expired (cached) token: %v", err)
			}
			if _, err := s.AuthInfoFromToken(ctx, tok); !errors.Is(err, ErrInvalidAuthToken) {
				t.Fatalf("expired token: %v", err)
			}
		})
	}
}

func flip(s string) string {
	b := []byte(s)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestJWTKeyErrors(t *testing.T) {
	dir := t.TempDir()
	pub1, priv1 := writeKeys(t, dir, "ES256")
	sub := filepath.Join(dir, "other")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	pub2, _ := writeKeys(t, sub, "ES256")
	_, rsaPriv := writeKeys(t, dir, "RS256")
	cases := []struct {
		opts string
		want error
	}{
		{"jwt,sign-method=ES256", ErrMissingKey},
		{"jwt,sign-method=HS256", ErrMissingKey},
		{"jwt,sign-method=ES256,pub-key=" + pub2 + ",priv-key=" + priv1, ErrKeyMismatch},
		{"jwt,sign-method=ES256,priv-key=" + filepath.Join(dir, "missing"), ErrInvalidAuthOpts},
		{"jwt,sign-method=ES256,priv-key=" + rsaPriv, nil}, // wrong key type: a parse error
		{"jwt,sign-method=XS256,pub-key=" + pub1, ErrInvalidAuthMethod},
	}
	for _, c := range cases {
		_, err := New(Config{TokenOptions: c.opts, BcryptCost: 4})
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.opts, err, c.want)
		}
	}
	// A token signed with another method is refused.
	_, hs := writeKeys(t, dir, "HS256")
	a := enabledStoreWith(t, Config{TokenOptions: "jwt,sign-method=HS256,priv-key=" + hs})
	b := enabledStoreWith(t, Config{TokenOptions: "jwt,sign-method=ES256,pub-key=" + pub1 + ",priv-key=" + priv1})
	tok := login(t, a, 3, "u")
	if _, err := b.AuthInfoFromToken(context.Background(), tok); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("HS256 token on an ES256 member: %v", err)
	}
}

func TestParseTokenOptions(t *testing.T) {
	o, err := ParseTokenOptions("jwt,pub-key=/p,priv-key=/k,sign-method=RS512,ttl=2m,extra=1")
	if err != nil {
		t.Fatal(err)
	}
	want := TokenOptions{Kind: TokenJWT, SignMethod: "RS512", PublicKeyFile: "/p", PrivateKeyFile: "/k", TTL: 2 * time.Minute, Unknown: []string{"extra"}}
	if o.Kind != want.Kind || o.SignMethod != want.SignMethod || o.PublicKeyFile != want.PublicKeyFile ||
		o.PrivateKeyFile != want.PrivateKeyFile || o.TTL != want.TTL || len(o.Unknown) != 1 {
		t.Fatalf("parsed %+v, want %+v", o, want)
	}
	if o, _ := ParseTokenOptions("jwt,sign-method=ES256"); o.TTL != DefaultJWTTTL {
		t.Errorf("default ttl %v", o.TTL)
	}
	for _, s := range []string{"", "none"} {
		if o, err := ParseTokenOptions(s); err != nil || o.Kind != TokenNone {
			t.Errorf("%q: %+v, %v", s, o, err)
		}
	}
	for _, s := range []string{"simple,x=1=2", "jwt,sign-method=ES256,ttl=0s", "jwt,sign-method=ES256,ttl=-1s", "Simple"} {
		if _, err := ParseTokenOptions(s); !errors.Is(err, ErrInvalidAuthOpts) {
			t.Errorf("%q: %v, want ErrInvalidAuthOpts", s, err)
		}
	}
}
