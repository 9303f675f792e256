package kvapi

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// Codec is gRPC's protobuf codec with a fast path for etcd's messages. They
// are gogo-generated: their own Marshal and Unmarshal methods are direct,
// whereas the default codec reaches them through protobuf's reflection
// adapter for old-API messages, which costs a locked type lookup per message
// (about a tenth of a loaded server's CPU). The wire format is the same, so
// clients cannot tell. Other messages go to the default codec.
var Codec encoding.CodecV2 = codec{fallback: encoding.GetCodecV2(proto.Name)}

type codec struct{ fallback encoding.CodecV2 }

// gogoMessage is what gogo generates for every etcd message.
type gogoMessage interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
	Unmarshal([]byte) error
	Reset()
}

func (codec) Name() string { return proto.Name }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(gogoMessage)
	if !ok {
		return c.fallback.Marshal(v)
	}
	size := m.Size()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBuffer(buf); err != nil {
			return nil, fmt.Errorf("proto: marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBuffer((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("proto: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(gogoMessage)
	if !ok {
		return c.fallback.Unmarshal(data, v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	// The generated Unmarshal appends to repeated fields and copies bytes
	// out of its input, so the pooled buffer may be reused afterwards.
	m.Reset()
	return m.Unmarshal(buf.ReadOnlyData())
}
