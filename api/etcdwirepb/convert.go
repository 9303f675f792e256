package etcdwirepb

import (
	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// FromEtcdHeader returns a copy of h as a ResponseHeader, or nil if h is nil.
func FromEtcdHeader(h *etcdserverpb.ResponseHeader) *ResponseHeader {
	if h == nil {
		return nil
	}
	return &ResponseHeader{
		ClusterId: h.ClusterId,
		MemberId:  h.MemberId,
		Revision:  h.Revision,
		RaftTerm:  h.RaftTerm,
	}
}

// ToEtcdHeader returns a copy of h as etcd's ResponseHeader, or nil if h is
// nil.
func ToEtcdHeader(h *ResponseHeader) *etcdserverpb.ResponseHeader {
	if h == nil {
		return nil
	}
	return &etcdserverpb.ResponseHeader{
		ClusterId: h.ClusterId,
		MemberId:  h.MemberId,
		Revision:  h.Revision,
		RaftTerm:  h.RaftTerm,
	}
}

// FromEtcdKeyValue returns a copy of kv as a KeyValue, or nil if kv is nil.
// The key and value byte slices are shared, not copied.
func FromEtcdKeyValue(kv *mvccpb.KeyValue) *KeyValue {
	if kv == nil {
		return nil
	}
	return &KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Value:          kv.Value,
		Lease:          kv.Lease,
	}
}

// ToEtcdKeyValue returns a copy of kv as etcd's KeyValue, or nil if kv is
// nil. The key and value byte slices are shared, not copied.
func ToEtcdKeyValue(kv *KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	return &mvccpb.KeyValue{
		Key:            kv.Key,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
		Version:        kv.Version,
		Value:          kv.Value,
		Lease:          kv.Lease,
	}
}
