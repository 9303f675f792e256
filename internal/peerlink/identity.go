package peerlink

import (
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/argon2"
)

// PublicKey is a node's Ed25519 public key: its identity on the network.
// It is comparable and usable as a map key.
type PublicKey [ed25519.PublicKeySize]byte

// String returns the first 6 bytes in hex, enough to tell peers apart in logs.
func (k PublicKey) String() string { return hex.EncodeToString(k[:6]) }

// Hex returns the whole key in hex.
func (k PublicKey) Hex() string { return hex.EncodeToString(k[:]) }

// less orders keys bytewise; it decides which of two duplicate links stays.
func (k PublicKey) less(o PublicKey) bool {
	for i := range k {
		if k[i] != o[i] {
			return k[i] < o[i]
		}
	}
	return false
}

// Identity is a node's Ed25519 key pair. It lives in memory only: a
// restarted process is a new identity.
type Identity struct {
	priv ed25519.PrivateKey
	pub  PublicKey
}

// NewIdentity generates a fresh key pair from crypto/rand.
func NewIdentity() (*Identity, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("peerlink: generate identity: %w", err)
	}
	id := &Identity{priv: priv}
	copy(id.pub[:], pub)
	return id, nil
}

// PublicKey returns the identity's public key.
func (id *Identity) PublicKey() PublicKey { return id.pub }

// Sign signs msg with the identity's private key (Ed25519), so that the
// layer above can make statements that anyone verifies against PublicKey
// (ed25519.Verify). Callers must prefix msg with a context string of their
// own, so that a signature made for one purpose is never valid for another;
// TLS never asks this key to sign raw caller bytes, only its own transcript.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// Key derivation parameters for the cluster CA. Changing any of them makes
// every node's certificate inadmissible to nodes running the old values, so
// they are versioned together by kdfInfo.
const (
	kdfInfo      = "meshkv peerlink cluster CA v1"
	argonTime    = 2
	argonMemory  = 19 * 1024 // KiB
	argonThreads = 1
	// weakSecretLen is the length under which New logs a warning: shorter
	// secrets are in reach of an offline dictionary attack (see the package
	// doc, Threat model).
	weakSecretLen = 16
)

// ClusterSecret is the cluster CA key derived from the shared password. Every
// holder can admit nodes; see the package doc for the threat model. Derive it
// once per process with NewClusterSecret and share it between Nodes.
type ClusterSecret struct {
	caPriv ed25519.PrivateKey
	caPub  ed25519.PublicKey
	ca     *x509.Certificate // template used as the issuer of leaves
	weak   bool
}

// NewClusterSecret derives the cluster CA key from password (the bytes of a
// password file). The password is stretched with Argon2id (about 20 MiB and
// tens of milliseconds) before HKDF-SHA256 derives the Ed25519 seed, because
// a node's certificate, which anyone reaching a listening port can fetch,
// lets an attacker test password guesses offline.
func NewClusterSecret(password []byte) (*ClusterSecret, error) {
	if len(password) == 0 {
		return nil, fmt.Errorf("%w: empty cluster secret", ErrInvalidConfig)
	}
	stretched := argon2.IDKey(password, []byte(kdfInfo), argonTime, argonMemory, argonThreads, 32)
	seed, err := hkdf.Key(sha256.New, stretched, nil, kdfInfo, ed25519.SeedSize)
	if err != nil {
		return nil, fmt.Errorf("peerlink: derive cluster key: %w", err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	pub := priv.Public().(ed25519.PublicKey)
	ca := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "meshkv cluster CA v1"},
		PublicKey:             pub,
		SubjectKeyId:          sha256Prefix(pub),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	return &ClusterSecret{caPriv: priv, caPub: pub, ca: ca, weak: len(password) < weakSecretLen}, nil
}

func sha256Prefix(b []byte) []byte {
	h := sha256.Sum256(b)
	return h[:20]
}

// farFuture is the NotAfter of every certificate: RFC 5280's "no well-defined
// expiration" value. Validity dates are not checked by peers anyway, so clock
// skew between nodes cannot lock anyone out.
var farFuture = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

// leafCertificate makes the TLS certificate for id: self-signed without a
// cluster secret, signed by the cluster CA with one.
func leafCertificate(id *Identity, cs *ClusterSecret, now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("peerlink: certificate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "meshkv peer " + id.pub.Hex()},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              farFuture,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	parent, signer := tmpl, any(id.priv)
	if cs != nil {
		parent, signer = cs.ca, cs.caPriv
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, ed25519.PublicKey(id.pub[:]), signer)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("peerlink: create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: id.priv}, nil
}

// errBadCertificate is wrapped by every certificate rejection.
var errBadCertificate = errors.New("peer certificate rejected")

// maxCertSize bounds the DER we are willing to parse (crypto/tls already
// bounds the whole message; ours are about 400 bytes).
const maxCertSize = 8 << 10

// verifyPeer checks the peer's certificate list as received in the TLS
// handshake and returns the peer's key. It admits exactly one Ed25519
// certificate; with a cluster secret that certificate must carry a
// PureEd25519 signature by the cluster CA over its TBSCertificate. Dates,
// names and extensions are not checked: possession of the leaf key is
// proven by TLS's CertificateVerify, membership by the CA signature.
func verifyPeer(rawCerts [][]byte, cs *ClusterSecret) (PublicKey, error) {
	var key PublicKey
	if len(rawCerts) != 1 {
		return key, fmt.Errorf("%w: want exactly one certificate, got %d", errBadCertificate, len(rawCerts))
	}
	if len(rawCerts[0]) > maxCertSize {
		return key, fmt.Errorf("%w: certificate of %d bytes", errBadCertificate, len(rawCerts[0]))
	}
	cert, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return key, fmt.Errorf("%w: %v", errBadCertificate, err)
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok || cert.PublicKeyAlgorithm != x509.Ed25519 || len(pub) != ed25519.PublicKeySize {
		return key, fmt.Errorf("%w: key is %v, want Ed25519", errBadCertificate, cert.PublicKeyAlgorithm)
	}
	if cs != nil {
		if cert.SignatureAlgorithm != x509.PureEd25519 {
			return key, fmt.Errorf("%w: signature algorithm %v, want Ed25519", errBadCertificate, cert.SignatureAlgorithm)
		}
		if !ed25519.Verify(cs.caPub, cert.RawTBSCertificate, cert.Signature) {
			return key, fmt.Errorf("%w: not signed by the cluster CA (wrong or missing cluster secret)", errBadCertificate)
		}
	}
	copy(key[:], pub)
	return key, nil
}
