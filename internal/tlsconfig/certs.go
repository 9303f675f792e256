package tlsconfig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"
)

// loadCRL reads a certificate revocation list, PEM or DER, and returns the
// revoked serial numbers (big-endian magnitude bytes).
func loadCRL(files []string) (map[string]bool, error) {
	data, err := os.ReadFile(files[0])
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: CRL file: %w", err)
	}
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		block, _ := pem.Decode(bytes.TrimSpace(data))
		if block == nil || block.Type != "X509 CRL" {
			return nil, fmt.Errorf("tlsconfig: CRL file %s: no X509 CRL PEM block", files[0])
		}
		data = block.Bytes
	}
	crl, err := x509.ParseRevocationList(data)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: CRL file %s: %w", files[0], err)
	}
	revoked := make(map[string]bool, len(crl.RevokedCertificateEntries))
	for _, e := range crl.RevokedCertificateEntries {
		revoked[string(e.SerialNumber.Bytes())] = true
	}
	return revoked, nil
}

// SelfSigned makes the automatic certificate (etcd's --auto-tls): a
// self-signed ECDSA P-256 server certificate for hosts (names or IP
// addresses, with or without a port), valid from now for validity. It lives
// in memory only.
func SelfSigned(hosts []string, now time.Time, validity time.Duration) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"meshkv"}},
		NotBefore:             now.Add(-time.Minute), // tolerate small clock skew
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsconfig: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// ClientOptions are etcdctl's TLS flags, for meshkv's own clients (the
// benchmark tool, tests).
type ClientOptions struct {
	// CAFile verifies the server (--cacert); empty means the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate (--cert, --key).
	CertFile string
	KeyFile  string
	// ServerName overrides the name verified in the server's certificate.
	ServerName string
	// InsecureSkipVerify accepts any server certificate
	// (--insecure-skip-tls-verify), as clients of an automatic one must.
	InsecureSkipVerify bool
}

// Client returns the client configuration the options describe.
func Client(o ClientOptions) (*tls.Config, error) {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("tlsconfig: client certificate and key must be given together")
	}
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		NextProtos:         []string{"h2"},
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.InsecureSkipVerify, //nolint:gosec // the operator's explicit choice
	}
	if o.CAFile != "" {
		pool, err := loadCAPool([]string{o.CAFile})
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" {
		cert, err := loadKeyPair([]string{o.CertFile, o.KeyFile})
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg, nil
}
