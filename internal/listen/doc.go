// Package listen opens meshkv's client listeners from etcd's client URLs
// (http://, https://, unix:// and unixs://) and gives the gRPC server the
// credentials that handshake each connection as its listener says.
//
// As in etcd, an http:// and an https:// URL with the same address share
// one port: a connection whose first byte starts a TLS record is served
// over TLS, any other as plaintext. One gRPC server serves every listener,
// the in-memory one of the embedding process included; the peer information
// of a connection tells the auth layer what it came over (TLS state with
// the verified client certificate, plaintext, or InprocInfo for the
// process itself).
//
// It starts no goroutines: gRPC calls the handshake on each connection's
// goroutine.
package listen
