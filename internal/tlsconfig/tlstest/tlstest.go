// Package tlstest makes throwaway certificate authorities, certificates and
// revocation lists in a directory, for tests of TLS and mutual TLS (meshkv's,
// and etcd's next to it) and for the benchmark tools. The methods taking a
// TB (a *testing.T or *testing.B) fail the test on error; the others return
// it. The package does not link the testing package, so that the benchmark
// tools can use it.
package tlstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TB is the part of testing.TB used here.
type TB interface {
	Helper()
	Fatal(args ...any)
	TempDir() string
}

// Validity is how long the certificates made here are valid (from an hour
// ago, to tolerate clock skew).
const Validity = 7 * 24 * time.Hour

// PKI is a certificate authority whose files live in a directory.
type PKI struct {
	Dir    string
	cert   *x509.Certificate
	key    crypto.Signer
	caFile string
}

// New makes a CA named name in a fresh temporary directory of t.
func New(t TB, name string) *PKI {
	t.Helper()
	p, err := NewCA(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// NewCA makes a CA named name whose files go to dir.
func NewCA(dir, name string) (*PKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sn, err := serial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: name + " CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &PKI{Dir: dir, cert: cert, key: key}
	if p.caFile, err = writePEM(filepath.Join(dir, name+"-ca.crt"), "CERTIFICATE", der); err != nil {
		return nil, err
	}
	return p, nil
}

// CAFile is the CA certificate's PEM file.
func (p *PKI) CAFile() string { return p.caFile }

// Server issues a server certificate; see IssueServer.
func (p *PKI) Server(t TB, name string, hosts ...string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile, err := p.IssueServer(name, hosts...)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// IssueServer issues a server certificate (also good for client
// authentication) with common name name for hosts (names or IP addresses;
// default 127.0.0.1, ::1 and localhost), and returns its certificate and
// key files, name.crt and name.key.
func (p *PKI) IssueServer(name string, hosts ...string) (certFile, keyFile string, err error) {
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: name},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	certFile, keyFile, _, err = p.issue(name, tmpl)
	return certFile, keyFile, err
}

// Client issues a client certificate; see IssueClient.
func (p *PKI) Client(t TB, name, cn string) (certFile, keyFile string, serial *big.Int) {
	t.Helper()
	certFile, keyFile, serial, err := p.IssueClient(name, cn)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, serial
}

// IssueClient issues a client certificate with common name cn (the user
// etcd's --client-cert-auth knows the client as) and returns its files,
// name.crt and name.key, and its serial number.
func (p *PKI) IssueClient(name, cn string) (certFile, keyFile string, serial *big.Int, err error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return p.issue(name, tmpl)
}

func (p *PKI) issue(name string, tmpl *x509.Certificate) (string, string, *big.Int, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	if tmpl.SerialNumber, err = serial(); err != nil {
		return "", "", nil, err
	}
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(Validity)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, key.Public(), p.key)
	if err != nil {
		return "", "", nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, err := writePEM(filepath.Join(p.Dir, name+".crt"), "CERTIFICATE", der)
	if err != nil {
		return "", "", nil, err
	}
	keyFile, err := writePEM(filepath.Join(p.Dir, name+".key"), "PRIVATE KEY", kder)
	if err != nil {
		return "", "", nil, err
	}
	return certFile, keyFile, tmpl.SerialNumber, nil
}

// CRL writes a revocation list (PEM) naming serials and returns its file,
// name.crl.
func (p *PKI) CRL(t TB, name string, serials ...*big.Int) string {
	t.Helper()
	der := p.CRLDER(t, serials...)
	f, err := writePEM(filepath.Join(p.Dir, name+".crl"), "X509 CRL", der)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// CRLDER returns a revocation list naming serials, DER-encoded (etcd reads
// only this form).
func (p *PKI) CRLDER(t TB, serials ...*big.Int) []byte {
	t.Helper()
	number, err := serial()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.RevocationList{
		Number:     number,
		ThisUpdate: time.Now().Add(-time.Minute),
		NextUpdate: time.Now().Add(time.Hour),
	}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.cert, p.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func serial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, err
	}
	return s.Add(s, big.NewInt(1)), nil
}

// writePEM writes a PEM block to a new file next to path and renames it
// into place, so a reader never sees it half written.
func writePEM(path, typ string, der []byte) (string, error) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
