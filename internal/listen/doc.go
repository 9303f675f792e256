// Package listen opens meshkv's client listeners from etcd's client URLs
// (http://, https://, unix:// and unixs://), tells which kinds of
// connection each admits (ModeOf: plaintext, TLS, or both on one port, as
// etcd serves an http:// and an https:// URL with the same address), and
// gives the gRPC server the credentials that mark the in-memory connection
// of the embedding process (InprocInfo), which no network client can reach.
//
// TLS itself is terminated by the client port's multiplexer
// (internal/clientmux), which also tells gRPC from HTTP; over TLS the gRPC
// peer information carries the verified client certificate.
//
// It starts no goroutines.
package listen
