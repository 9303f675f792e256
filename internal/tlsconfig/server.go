package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Server builds the TLS configuration of a client listener from Options
// and keeps it current: every handshake looks at the files it was built
// from (one stat each) and, when one changed, reloads it. A certificate or
// CA file that fails to load (half written, say) leaves the last good one in
// use until the file changes again; the failure is logged once.
type Server struct {
	opts Options
	log  *slog.Logger
	base *tls.Config // the handshake-independent settings

	cert *fileCache[*tls.Certificate] // nil with AutoTLS
	auto *tls.Certificate             // the automatic certificate
	ca   *fileCache[*x509.CertPool]   // nil without TrustedCAFile
	crl  *fileCache[map[string]bool]  // revoked serials; nil without CRLFile

	mu  sync.Mutex // serializes rebuilds
	cur atomic.Pointer[derived]
}

// derived is the configuration for one version of the certificate and CA.
type derived struct {
	cert *tls.Certificate
	ca   *x509.CertPool
	cfg  *tls.Config
}

// New loads the certificate, CA and CRL files (or makes the automatic
// certificate) and returns the server side. Errors name the file at fault.
func New(o Options) (*Server, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if !o.Enabled() {
		return nil, errors.New("tlsconfig: no certificate: set CertFile and KeyFile, or AutoTLS")
	}
	o = o.withDefaults()
	s := &Server{opts: o, log: o.Logger}
	minV, _ := ParseVersion(o.MinVersion)
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	maxV, _ := ParseVersion(o.MaxVersion)
	suites, _ := ParseCipherSuites(o.CipherSuites)
	s.base = &tls.Config{
		MinVersion: minV,
		MaxVersion: maxV,
		// gRPC runs over HTTP/2, which TLS clients must negotiate; HTTP/1.1
		// serves curl, Prometheus and the gateway's other clients.
		NextProtos: []string{"h2", "http/1.1"},
		ClientAuth: tls.NoClientCert,
	}
	if len(suites) > 0 {
		s.base.CipherSuites = suites
	}
	if o.TrustedCAFile != "" || o.ClientCertAuth {
		s.base.ClientAuth = tls.RequireAndVerifyClientCert
	}

	var err error
	if o.CertFile != "" {
		s.cert = newFileCache("certificate", []string{o.CertFile, o.KeyFile}, loadKeyPair, s.log)
		if _, err = s.cert.get(); err != nil {
			return nil, err
		}
	} else {
		if s.auto, err = SelfSigned(o.Hosts, o.Now(), o.SelfSignedCertValidity); err != nil {
			return nil, err
		}
		s.log.Warn("tlsconfig: serving an automatically generated self-signed certificate; clients cannot verify it",
			"not-after", s.auto.Leaf.NotAfter)
	}
	if o.TrustedCAFile != "" {
		s.ca = newFileCache("trusted CA", []string{o.TrustedCAFile}, loadCAPool, s.log)
		if _, err = s.ca.get(); err != nil {
			return nil, err
		}
	}
	if o.CRLFile != "" {
		s.crl = newFileCache("CRL", []string{o.CRLFile}, loadCRL, s.log)
		s.crl.keepLastGood = false // refuse clients while the CRL is unreadable, as etcd does
		if _, err = s.crl.get(); err != nil {
			return nil, err
		}
	}
	if s.crl != nil || len(o.AllowedHostnames) > 0 {
		s.base.VerifyConnection = s.verifyClient
	}
	if _, err := s.configFor(nil); err != nil {
		return nil, err
	}
	return s, nil
}

// Config returns the configuration to serve with. It picks the current
// certificate, CA and CRL at each handshake.
func (s *Server) Config() *tls.Config {
	return &tls.Config{
		MinVersion:         s.base.MinVersion,
		MaxVersion:         s.base.MaxVersion,
		NextProtos:         s.base.NextProtos,
		GetConfigForClient: s.configFor,
	}
}

// configFor returns the configuration for one handshake, rebuilt if a file
// changed since the last.
func (s *Server) configFor(*tls.ClientHelloInfo) (*tls.Config, error) {
	cert := s.auto
	if s.cert != nil {
		var err error
		if cert, err = s.cert.get(); err != nil {
			return nil, err
		}
	}
	var ca *x509.CertPool
	if s.ca != nil {
		var err error
		if ca, err = s.ca.get(); err != nil {
			return nil, err
		}
	}
	if d := s.cur.Load(); d != nil && d.cert == cert && d.ca == ca {
		return d.cfg, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if d := s.cur.Load(); d != nil && d.cert == cert && d.ca == ca {
		return d.cfg, nil
	}
	cfg := s.base.Clone()
	cfg.Certificates = []tls.Certificate{*cert}
	cfg.ClientCAs = ca
	s.cur.Store(&derived{cert: cert, ca: ca, cfg: cfg})
	return cfg, nil
}

// verifyClient runs the checks of a client certificate beyond its chain:
// the allowed hostnames and the CRL.
func (s *Server) verifyClient(cs tls.ConnectionState) error {
	if err := s.checkHostname(cs); err != nil {
		return err
	}
	if s.crl != nil {
		return s.checkRevoked(cs)
	}
	return nil
}

// checkHostname refuses a client certificate that is valid for none of the
// allowed hostnames. Without a certificate (no client authentication asked
// for) there is nothing to check.
func (s *Server) checkHostname(cs tls.ConnectionState) error {
	if len(s.opts.AllowedHostnames) == 0 || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	for _, h := range s.opts.AllowedHostnames {
		if leaf.VerifyHostname(h) == nil {
			return nil
		}
	}
	return fmt.Errorf("tlsconfig: client certificate %q is valid for none of the allowed hostnames %v", leaf.Subject.CommonName, s.opts.AllowedHostnames)
}

// checkRevoked refuses a client whose certificate chain holds a serial
// number the CRL lists (etcd's check: serial numbers only).
func (s *Server) checkRevoked(cs tls.ConnectionState) error {
	revoked, err := s.crl.get()
	if err != nil {
		return err
	}
	for _, c := range cs.PeerCertificates {
		if revoked[string(c.SerialNumber.Bytes())] {
			return fmt.Errorf("tlsconfig: certificate serial %x revoked", c.SerialNumber.Bytes())
		}
	}
	return nil
}

// fileCache holds what was loaded from some files and reloads it when one of
// them changes (size or modification time).
type fileCache[T any] struct {
	what  string
	files []string
	load  func(files []string) (T, error)
	log   *slog.Logger
	// keepLastGood keeps serving the last loaded value while the files do
	// not load; without it a failure is returned until they load again.
	keepLastGood bool

	mu      sync.Mutex
	state   atomic.Pointer[cacheState[T]]
	lastErr error
}

type cacheState[T any] struct {
	sigs  []fileSig // of the version loaded or last tried
	val   T
	err   error // of the last try, if it failed and there is no value to keep
	valid bool
}

// fileSig tells versions of a file apart.
type fileSig struct {
	size int64
	mod  time.Time
	err  string
}

func statSig(path string) fileSig {
	fi, err := os.Stat(path)
	if err != nil {
		return fileSig{err: err.Error()}
	}
	return fileSig{size: fi.Size(), mod: fi.ModTime()}
}

func newFileCache[T any](what string, files []string, load func([]string) (T, error), log *slog.Logger) *fileCache[T] {
	return &fileCache[T]{what: what, files: files, load: load, log: log, keepLastGood: true}
}

func (c *fileCache[T]) sigs() []fileSig {
	out := make([]fileSig, len(c.files))
	for i, f := range c.files {
		out[i] = statSig(f)
	}
	return out
}

func sameSigs(a, b []fileSig) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].mod.Equal(b[i].mod) || a[i].err != b[i].err {
			return false
		}
	}
	return true
}

// get returns the value for the files as they are now, loading them if they
// changed since the last look.
func (c *fileCache[T]) get() (T, error) {
	sigs := c.sigs()
	if st := c.state.Load(); st != nil && sameSigs(st.sigs, sigs) {
		return st.val, st.err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev := c.state.Load()
	if prev != nil && sameSigs(prev.sigs, sigs) {
		return prev.val, prev.err
	}
	val, err := c.load(c.files)
	next := &cacheState[T]{sigs: sigs, val: val, valid: err == nil}
	switch {
	case err == nil:
		if prev != nil {
			c.log.Info("tlsconfig: reloaded "+c.what, "files", c.files)
		}
	case c.keepLastGood && prev != nil && prev.valid:
		next.val, next.valid = prev.val, true
		c.log.Warn("tlsconfig: cannot reload "+c.what+"; keeping the previous one", "files", c.files, "err", err)
	default:
		next.err = err
		c.log.Error("tlsconfig: cannot load "+c.what, "files", c.files, "err", err)
	}
	c.state.Store(next)
	return next.val, next.err
}

func loadKeyPair(files []string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(files[0], files[1])
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: certificate %s, key %s: %w", files[0], files[1], err)
	}
	return &cert, nil
}

func loadCAPool(files []string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: trusted CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("tlsconfig: trusted CA file %s holds no PEM certificate", files[0])
	}
	return pool, nil
}
