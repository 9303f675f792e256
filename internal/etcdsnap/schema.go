package etcdsnap

import (
	"encoding/binary"
	"math"

	"google.golang.org/protobuf/encoding/protowire"
)

// etcd's backend schema: bucket names, the keys of the meta and auth buckets,
// and the encodings of revisions, key-values and leases.
var (
	bucketKey            = []byte("key")
	bucketMeta           = []byte("meta")
	bucketLease          = []byte("lease")
	bucketAlarm          = []byte("alarm")
	bucketCluster        = []byte("cluster")
	bucketMembers        = []byte("members")
	bucketMembersRemoved = []byte("members_removed")
	bucketAuth           = []byte("auth")
	bucketAuthUsers      = []byte("authUsers")
	bucketAuthRoles      = []byte("authRoles")

	metaConsistentIndex  = []byte("consistent_index")
	metaFinishedCompact  = []byte("finishedCompactRev")
	metaScheduledCompact = []byte("scheduledCompactRev")
	metaStorageVersion   = []byte("storageVersion")
	metaTerm             = []byte("term")

	authEnabledKey  = []byte("authEnabled")
	authRevisionKey = []byte("authRevision")
)

// StorageVersion is the storage version written into the meta bucket: etcd
// 3.6's schema, which etcd 3.6 restores as is and etcd 3.7 restores and
// migrates (its 3.7 schema adds nothing). A newer version would make etcd 3.6
// refuse the file.
const StorageVersion = "3.6.0"

// Revision keys of the key bucket: the main revision (8 bytes, big endian),
// '_', the sub revision (8 bytes, big endian), and a trailing 't' on the
// tombstone of a delete.
const (
	revKeyLen       = 8 + 1 + 8
	markedRevKeyLen = revKeyLen + 1
	revSeparator    = '_'
	tombstoneMark   = 't'
)

// appendRevKey appends the key-bucket key of revision (main, sub).
func appendRevKey(b []byte, main, sub int64, tombstone bool) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(main))
	b = append(b, revSeparator)
	b = binary.BigEndian.AppendUint64(b, uint64(sub))
	if tombstone {
		b = append(b, tombstoneMark)
	}
	return b
}

// parseRevKey parses a key-bucket key.
func parseRevKey(k []byte) (main, sub int64, tombstone, ok bool) {
	if (len(k) != revKeyLen && len(k) != markedRevKeyLen) || k[8] != revSeparator {
		return 0, 0, false, false
	}
	um, us := binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[9:])
	if um > math.MaxInt64 || us > math.MaxInt64 {
		return 0, 0, false, false
	}
	if len(k) == markedRevKeyLen {
		if k[revKeyLen] != tombstoneMark {
			return 0, 0, false, false
		}
		tombstone = true
	}
	return int64(um), int64(us), tombstone, true
}

// Field numbers of mvccpb.KeyValue and leasepb.Lease.
const (
	kvKey            protowire.Number = 1
	kvCreateRevision protowire.Number = 2
	kvModRevision    protowire.Number = 3
	kvVersion        protowire.Number = 4
	kvValue          protowire.Number = 5
	kvLease          protowire.Number = 6

	leaseID           protowire.Number = 1
	leaseTTL          protowire.Number = 2
	leaseRemainingTTL protowire.Number = 3
)

func appendVarintField(b []byte, n protowire.Number, x int64) []byte {
	if x == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(x))
}

func appendBytesField(b []byte, n protowire.Number, x []byte) []byte {
	if len(x) == 0 {
		return b
	}
	b = protowire.AppendTag(b, n, protowire.BytesType)
	return protowire.AppendBytes(b, x)
}

// appendKV appends the mvccpb.KeyValue encoding of kv: the byte-exact output
// of proto.Marshal, fields in number order, zero fields left out. A
// tombstone carries only its key, as etcd writes it.
func appendKV(b []byte, kv *KV) []byte {
	b = appendBytesField(b, kvKey, kv.Key)
	if kv.Tombstone {
		return b
	}
	b = appendVarintField(b, kvCreateRevision, kv.CreateRevision)
	b = appendVarintField(b, kvModRevision, kv.ModRevision)
	b = appendVarintField(b, kvVersion, kv.Version)
	b = appendBytesField(b, kvValue, kv.Value)
	return appendVarintField(b, kvLease, kv.Lease)
}

// parseKV decodes an mvccpb.KeyValue into kv. Key and Value alias b. Unknown
// fields are skipped, as proto.Unmarshal does.
func parseKV(b []byte, kv *KV) bool {
	*kv = KV{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return false
		}
		b = b[n:]
		switch {
		case (num == kvKey || num == kvValue) && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return false
			}
			if num == kvKey {
				kv.Key = v
			} else {
				kv.Value = v
			}
			b = b[n:]
		case num >= kvCreateRevision && num <= kvLease && num != kvValue && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return false
			}
			switch num {
			case kvCreateRevision:
				kv.CreateRevision = int64(v)
			case kvModRevision:
				kv.ModRevision = int64(v)
			case kvVersion:
				kv.Version = int64(v)
			case kvLease:
				kv.Lease = int64(v)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return false
			}
			b = b[n:]
		}
	}
	return true
}

// appendLease appends the leasepb.Lease encoding of l.
func appendLease(b []byte, l Lease) []byte {
	b = appendVarintField(b, leaseID, l.ID)
	b = appendVarintField(b, leaseTTL, l.TTL)
	return appendVarintField(b, leaseRemainingTTL, l.RemainingTTL)
}

// parseLease decodes a leasepb.Lease.
func parseLease(b []byte) (Lease, bool) {
	var l Lease
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return Lease{}, false
		}
		b = b[n:]
		if num >= leaseID && num <= leaseRemainingTTL && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return Lease{}, false
			}
			switch num {
			case leaseID:
				l.ID = int64(v)
			case leaseTTL:
				l.TTL = int64(v)
			default:
				l.RemainingTTL = int64(v)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return Lease{}, false
		}
		b = b[n:]
	}
	return l, true
}

// leaseKey is the lease bucket's key of lease id: the id's 8 bytes, big
// endian (so negative ids sort after positive ones).
func leaseKey(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }

// be64 is an 8-byte big-endian value (consistent index, term, auth revision).
func be64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }
