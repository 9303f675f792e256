// Package tlsconfig builds the TLS configuration of meshkv's client
// listeners from etcd's flags (--cert-file, --key-file, --trusted-ca-file,
// --client-cert-auth, --auto-tls, --client-crl-file, --tls-min-version,
// --tls-max-version, --cipher-suites), with etcd's behaviour:
//
//   - TLS 1.2 at least by default; HTTP/2 negotiated (ALPN "h2"), as gRPC
//     needs;
//   - a trusted CA file, or --client-cert-auth, makes client certificates
//     required and verified against it (--client-cert-auth without a CA
//     file is refused: it would trust every public CA);
//   - the certificate, the key and the CA file are reloaded when they change,
//     looked at on every handshake (a stat per file) rather than read anew
//     each time as etcd does; a file that fails to load keeps the previous
//     version in use until it changes again;
//   - a CRL refuses client certificates by serial number; it is reloaded
//     when it changes, and while it cannot be read every client certificate
//     is refused, as in etcd;
//   - --auto-tls serves a self-signed certificate made in memory at start.
//
// Client builds the matching client side for meshkv's own tools.
//
// It starts no goroutines; a Server is safe for concurrent handshakes.
package tlsconfig
