package bench

import (
	"context"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// connect is one operation of the Connect workload: dial a fresh gRPC
// connection (TCP or unix, TLS handshake when configured), put a random key
// through etcd's KV service, close. Worker i dials endpoint i modulo their
// number. TLS sessions are not resumed: every handshake is a full one.
func (r *runner) connect(ctx context.Context, w *worker) opResult {
	target := grpcTarget(r.cfg.Endpoints[w.id%len(r.cfg.Endpoints)])
	creds := insecure.NewCredentials()
	if r.cfg.TLS != nil {
		creds = credentials.NewTLS(r.cfg.TLS)
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return opResult{kind: "connect", err: err}
	}
	defer cc.Close()
	_, err = pb.NewKVClient(cc).Put(ctx, &pb.PutRequest{Key: []byte(r.randomKey(w)), Value: []byte(r.value)})
	return opResult{kind: "connect", err: err}
}

// grpcTarget turns an etcd endpoint into a gRPC target that skips name
// resolution for host:port.
func grpcTarget(ep string) string {
	for _, scheme := range []string{"unixs://", "unix://"} {
		if rest, ok := strings.CutPrefix(ep, scheme); ok {
			return "unix:" + rest
		}
	}
	for _, scheme := range []string{"https://", "http://"} {
		if rest, ok := strings.CutPrefix(ep, scheme); ok {
			ep = rest
		}
	}
	return "passthrough:///" + ep
}
