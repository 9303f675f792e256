package main

import (
	"flag"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/listen"
	"github.com/meshkv/meshkv/internal/tlsconfig"
)

// securityFlags are etcd's client TLS and authentication flags.
type securityFlags struct {
	tls          tlsconfig.Options
	cipherSuites string
	allowedHosts string
	validity     uint // years
	authToken    string
	authTTL      uint // seconds
	bcryptCost   uint
}

func addSecurityFlags(fs *flag.FlagSet) *securityFlags {
	f := &securityFlags{}
	fs.StringVar(&f.tls.CertFile, "cert-file", "", "client server TLS certificate `file` (PEM; reloaded when it changes)")
	fs.StringVar(&f.tls.KeyFile, "key-file", "", "client server TLS key `file` (PEM; reloaded when it changes)")
	fs.StringVar(&f.tls.TrustedCAFile, "trusted-ca-file", "", "CA `file` (PEM) that client certificates must chain to; setting it requires client certificates")
	fs.BoolVar(&f.tls.ClientCertAuth, "client-cert-auth", false, "require client certificates signed by --trusted-ca-file; with auth enabled, a certificate's common name is the user of requests without a token")
	fs.BoolVar(&f.tls.AutoTLS, "auto-tls", false, "serve https:// URLs with a self-signed certificate made at start when no --cert-file is given (clients cannot verify it)")
	fs.UintVar(&f.validity, "self-signed-cert-validity", 1, "validity of the --auto-tls certificate in `years`")
	fs.StringVar(&f.allowedHosts, "client-cert-allowed-hostname", "", "comma-separated `hostnames`: only client certificates valid for one of them (DNS or IP subject alternative name) are admitted; needs --trusted-ca-file")
	fs.StringVar(&f.tls.CRLFile, "client-crl-file", "", "certificate revocation list `file` (PEM or DER): listed client certificates are refused")
	fs.StringVar(&f.tls.MinVersion, "tls-min-version", "TLS1.2", "minimum TLS `version`: TLS1.2 or TLS1.3")
	fs.StringVar(&f.tls.MaxVersion, "tls-max-version", "", "maximum TLS `version`: TLS1.2 or TLS1.3 (empty: Go's maximum)")
	fs.StringVar(&f.cipherSuites, "cipher-suites", "", "comma-separated TLS 1.2 cipher `suites` (Go's names; empty: Go's defaults)")
	fs.StringVar(&f.authToken, "auth-token", meshkv.DefaultAuthToken, "auth token `kind`: simple, or jwt,pub-key=FILE,priv-key=FILE,sign-method=METHOD[,ttl=DURATION]; empty: none (users known by certificate only)")
	fs.UintVar(&f.authTTL, "auth-token-ttl", uint(meshkv.DefaultAuthTokenTTL/time.Second), "lifetime of a simple token after its last use, in `seconds`")
	fs.UintVar(&f.bcryptCost, "bcrypt-cost", uint(meshkv.DefaultBcryptCost), "bcrypt `cost` of password hashes (4 to 31)")
	return f
}

// apply sets the client security of cfg: the authentication options, and,
// when a certificate or --auto-tls is given, the TLS configuration of the
// https:// and unixs:// listeners (reading the certificate files).
func (f *securityFlags) apply(cfg *meshkv.Config, log *slog.Logger) error {
	cfg.AuthToken = f.authToken
	if cfg.AuthToken == "" {
		cfg.AuthToken = meshkv.AuthTokenNone
	}
	cfg.AuthTokenTTL = time.Duration(f.authTTL) * time.Second
	if f.authTTL == 0 {
		return fmt.Errorf("--auth-token-ttl must be positive")
	}
	cfg.BcryptCost = int(f.bcryptCost)
	cfg.ClientCertAuth = f.tls.ClientCertAuth

	o := f.tls
	o.CipherSuites = splitList(f.cipherSuites)
	o.AllowedHostnames = splitList(f.allowedHosts)
	o.SelfSignedCertValidity = time.Duration(f.validity) * 365 * 24 * time.Hour
	o.Logger = log
	if f.validity == 0 {
		return fmt.Errorf("--self-signed-cert-validity must be positive")
	}
	if o.AutoTLS && o.CertFile != "" {
		log.Warn("ignoring --auto-tls: a certificate is given")
		o.AutoTLS = false
	}
	if err := o.Validate(); err != nil {
		return err
	}
	if !o.Enabled() {
		return nil
	}
	secure := false
	for _, s := range cfg.ListenClientURLs {
		u, err := listen.ParseURL(s)
		if err != nil {
			return err
		}
		if u.Secure() {
			secure = true
		} else if o.ClientCertAuth {
			log.Warn("client URL is http or unix while --client-cert-auth is set; its clients are not asked for certificates", "url", s)
		}
		o.Hosts = append(o.Hosts, u.Addr)
	}
	if !secure {
		log.Warn("TLS options given but no https:// or unixs:// client URL: clients are served in plaintext")
		return nil
	}
	srv, err := tlsconfig.New(o)
	if err != nil {
		return err
	}
	cfg.ClientTLS = srv.Config()
	return nil
}
