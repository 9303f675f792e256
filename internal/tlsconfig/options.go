package tlsconfig

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// DefaultSelfSignedCertValidity is how long an automatic certificate is
// valid (etcd's --self-signed-cert-validity default: one year).
const DefaultSelfSignedCertValidity = 365 * 24 * time.Hour

// Options are etcd's client TLS flags. The zero value means no TLS.
type Options struct {
	// CertFile and KeyFile are the server's PEM certificate (chain) and key
	// (--cert-file, --key-file). They are read again whenever they change,
	// so replacing them rotates the certificate without a restart.
	CertFile string
	KeyFile  string
	// TrustedCAFile holds the PEM CA certificates client certificates are
	// verified against (--trusted-ca-file). As in etcd, setting it also
	// requires clients to present a certificate. It is reloaded when it
	// changes.
	TrustedCAFile string
	// ClientCertAuth requires a client certificate signed by a trusted CA
	// (--client-cert-auth); TrustedCAFile must be set.
	ClientCertAuth bool
	// AllowedHostnames, when not empty, admits only client certificates
	// valid for one of these names (a DNS or IP subject alternative name,
	// or a wildcard that covers it), as etcd's
	// --client-cert-allowed-hostname. It needs client certificates
	// (TrustedCAFile).
	AllowedHostnames []string
	// AutoTLS serves a self-signed certificate made at start when no
	// CertFile and KeyFile are given (--auto-tls). Clients cannot verify
	// it: it protects against eavesdropping, not against impersonation.
	AutoTLS bool
	// CRLFile is a certificate revocation list (PEM or DER,
	// --client-crl-file): a client certificate whose serial number it lists
	// is refused. It is reloaded when it changes; while it cannot be read,
	// client certificates are refused.
	CRLFile string
	// MinVersion and MaxVersion bound the TLS version: "TLS1.2" or
	// "TLS1.3" (--tls-min-version, default TLS1.2; --tls-max-version,
	// default Go's maximum).
	MinVersion string
	MaxVersion string
	// CipherSuites restricts the TLS 1.2 cipher suites, by Go's names
	// (--cipher-suites); empty means Go's defaults. TLS 1.3 suites are not
	// configurable.
	CipherSuites []string
	// Hosts are the names and IP addresses (host or host:port) an automatic
	// certificate is made for: the listen addresses.
	Hosts []string
	// SelfSignedCertValidity is the lifetime of an automatic certificate
	// (default DefaultSelfSignedCertValidity).
	SelfSignedCertValidity time.Duration
	// Now is the clock the automatic certificate's validity starts from
	// (default time.Now).
	Now func() time.Time
	// Logger receives certificate reloads and their failures (nil =
	// discard).
	Logger *slog.Logger
}

// Errors of Validate.
var (
	// ErrCertKeyPair: only one of CertFile and KeyFile is set.
	ErrCertKeyPair = errors.New("tlsconfig: --cert-file and --key-file must be given together")
	// ErrNoServerCert: client authentication or a CRL without a server
	// certificate (files or AutoTLS).
	ErrNoServerCert = errors.New("tlsconfig: client certificate options need --cert-file and --key-file, or --auto-tls")
	// ErrNoTrustedCA: ClientCertAuth without TrustedCAFile, which would
	// accept any certificate a public CA signed.
	ErrNoTrustedCA = errors.New("tlsconfig: --client-cert-auth needs --trusted-ca-file")
	// ErrAllowedHostnameNoCA: AllowedHostnames without client certificates
	// to check them against.
	ErrAllowedHostnameNoCA = errors.New("tlsconfig: --client-cert-allowed-hostname needs --trusted-ca-file and --client-cert-auth")
)

// Enabled reports whether the options ask for TLS at all.
func (o Options) Enabled() bool {
	return o.CertFile != "" || o.KeyFile != "" || o.AutoTLS
}

// Validate reports options that cannot work. It changes nothing and reads
// no file.
func (o Options) Validate() error {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return ErrCertKeyPair
	}
	if !o.Enabled() && (o.TrustedCAFile != "" || o.ClientCertAuth || o.CRLFile != "") {
		return ErrNoServerCert
	}
	if o.ClientCertAuth && o.TrustedCAFile == "" {
		return ErrNoTrustedCA
	}
	if len(o.AllowedHostnames) > 0 && o.TrustedCAFile == "" {
		return ErrAllowedHostnameNoCA
	}
	for _, h := range o.AllowedHostnames {
		if h == "" {
			return errors.New("tlsconfig: empty allowed client certificate hostname")
		}
	}
	if o.SelfSignedCertValidity < 0 {
		return fmt.Errorf("tlsconfig: negative self-signed certificate validity %v", o.SelfSignedCertValidity)
	}
	minV, err := ParseVersion(o.MinVersion)
	if err != nil {
		return err
	}
	maxV, err := ParseVersion(o.MaxVersion)
	if err != nil {
		return err
	}
	if minV == 0 {
		minV = tls.VersionTLS12
	}
	if maxV != 0 && minV > maxV {
		return fmt.Errorf("tlsconfig: min version (%s) is greater than max version (%s)", o.MinVersion, o.MaxVersion)
	}
	if _, err := ParseCipherSuites(o.CipherSuites); err != nil {
		return err
	}
	if minV == tls.VersionTLS13 && len(o.CipherSuites) > 0 {
		return errors.New("tlsconfig: cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	return nil
}

// ParseVersion parses etcd's TLS version names: "" (0: Go's default),
// "TLS1.2" or "TLS1.3".
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "":
		return 0, nil
	case "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tlsconfig: unexpected TLS version %q (must be one of: TLS1.2, TLS1.3)", s)
}

// ParseCipherSuites maps cipher suite names (Go's, including the insecure
// ones, and etcd's two CHACHA20 aliases) to their ids.
func ParseCipherSuites(names []string) ([]uint16, error) {
	ids := make([]uint16, 0, len(names))
next:
	for _, n := range names {
		for _, list := range [][]*tls.CipherSuite{tls.CipherSuites(), tls.InsecureCipherSuites()} {
			for _, c := range list {
				if c.Name == n {
					ids = append(ids, c.ID)
					continue next
				}
			}
		}
		switch n {
		case "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305":
			ids = append(ids, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)
		case "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305":
			ids = append(ids, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
		default:
			return nil, fmt.Errorf("tlsconfig: unexpected TLS cipher suite %q", n)
		}
	}
	return ids, nil
}

func (o Options) withDefaults() Options {
	if o.SelfSignedCertValidity == 0 {
		o.SelfSignedCertValidity = DefaultSelfSignedCertValidity
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
