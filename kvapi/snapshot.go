package kvapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshkv/meshkv/internal/backup"
	"github.com/meshkv/meshkv/internal/etcdsnap"
)

// snapshotChunkSize is the size of each SnapshotResponse blob, as etcd's
// (32 KiB: several pages per message).
const snapshotChunkSize = 32 << 10

// Snapshot streams this member's store as an etcd snapshot file: the bbolt
// database of etcd's backend layout, in 32 KiB messages whose
// remaining_bytes count down the database bytes still to come, then a last
// message with the database's sha256, as etcd sends them (etcdctl snapshot
// save stores the lot, etcdutl snapshot restore checks the sha256). version
// carries the storage version. The stream is written from a copy-on-write
// capture of the store: writes go on meanwhile, and the file is never held
// in memory. As in etcd, the state is this member's applied state, without
// a quorum read.
func (s maintenanceServer) Snapshot(r *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	ctx := srv.Context()
	if err := s.requireAdmin(ctx); err != nil {
		return err
	}
	rs := s.cluster.RaftStatus()
	opts := etcdsnap.WriteOptions{ConsistentIndex: rs.AppliedIndex, Term: rs.Term}
	a := s.auth.Export()
	opts.Auth = &etcdsnap.Auth{Enabled: a.Enabled, Revision: a.Revision, Users: a.Users, Roles: a.Roles}
	sn := s.store.Snapshot()
	f, err := backup.Prepare(sn, opts)
	if err != nil {
		s.cfg.Logger.Error("cannot lay out snapshot", "rev", sn.Rev(), "err", err)
		return status.Errorf(codes.Internal, "meshkv: snapshot: %v", err)
	}
	s.cfg.Logger.Info("sending snapshot", "rev", sn.Rev(), "bytes", f.Size())
	w := &snapshotSender{srv: srv, left: f.DBSize()}
	if _, err := f.WriteTo(w); err != nil {
		if w.sendErr != nil {
			return togRPCError(ctx, w.sendErr)
		}
		s.cfg.Logger.Error("cannot write snapshot", "rev", sn.Rev(), "err", err)
		return status.Errorf(codes.Internal, "meshkv: snapshot: %v", err)
	}
	if err := w.flush(); err != nil {
		return togRPCError(ctx, err)
	}
	return nil
}

// snapshotSender cuts the file into SnapshotResponses: database bytes in
// chunks of snapshotChunkSize, then the trailer (the bytes after the
// database) in a message of its own.
type snapshotSender struct {
	srv     pb.Maintenance_SnapshotServer
	left    int64  // database bytes not yet sent
	buf     []byte // the message being filled
	sendErr error  // the first error of srv.Send
}

func (w *snapshotSender) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		if w.buf == nil {
			// A fresh buffer per message: gRPC may use a sent message
			// after Send returns.
			w.buf = make([]byte, 0, snapshotChunkSize)
		}
		room := snapshotChunkSize - len(w.buf)
		if w.left > 0 {
			// Database bytes never share a message with the trailer.
			room = int(min(int64(room), w.left-int64(len(w.buf))))
		}
		k := min(room, len(p))
		w.buf = append(w.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(w.buf) == snapshotChunkSize || (w.left > 0 && int64(len(w.buf)) == w.left) {
			if err := w.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// flush sends the buffered bytes, if any.
func (w *snapshotSender) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	if w.left > 0 {
		w.left -= int64(len(w.buf))
	}
	err := w.srv.Send(&pb.SnapshotResponse{
		RemainingBytes: uint64(w.left),
		Blob:           w.buf,
		Version:        etcdsnap.StorageVersion,
	})
	w.buf = nil
	if err != nil && w.sendErr == nil {
		w.sendErr = err
	}
	return err
}
