package peerlink

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"testing"
	"unicode/utf8"
)

// The fuzz tests cover every decoder of bytes read from the network. Each
// checks that the decoder never panics, never returns more than it was
// given, and that whatever it accepts re-encodes to something it accepts
// again with the same meaning. `go test -run Fuzz` runs the seeds.

func FuzzReadRecord(f *testing.F) {
	var seeds [][]byte
	seeds = append(seeds, appendHello(nil, hello{version: 1, cluster: "c", maxDatagram: 1 << 20, window: 1 << 20}))
	seeds = append(seeds, appendData(nil, 1, 0, []byte("x")))
	seeds = append(seeds, appendUvarintRecord(nil, recReady))
	seeds = append(seeds, appendClose(nil, closeShutdown, "bye"))
	seeds = append(seeds, append(appendUvarintRecord(nil, recPing, 9), appendUvarintRecord(nil, recPong, 9)...))
	seeds = append(seeds, []byte{recData, 0xff, 0xff, 0xff, 0xff})
	seeds = append(seeds, []byte{recSData, 0, 0, 0, 2, 1})
	for _, s := range seeds {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, in []byte, est bool) {
		limits := recordLimits{established: est, maxDatagram: 1 << 10}
		br := bufio.NewReader(bytes.NewReader(in))
		var scratch []byte
		consumed := 0
		for {
			typ, body, err := readRecord(br, limits, &scratch)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, errMalformed) {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if max := limits.maxBody(typ); max < 0 || len(body) > max {
				t.Fatalf("accepted %s of %d bytes (limit %d)", recordName(typ), len(body), max)
			}
			consumed += headerLen + len(body)
			if consumed > len(in) {
				t.Fatalf("consumed %d of %d bytes", consumed, len(in))
			}
		}
	})
}

func FuzzDecodeHello(f *testing.F) {
	f.Add(appendHello(nil, hello{version: 1, cluster: "c", advertise: "10.0.0.1:2380", nonce: 1,
		maxDatagram: 1 << 20, window: 4 << 20, app: []byte("raft")})[headerLen:])
	f.Add(appendHello(nil, hello{version: 9, maxDatagram: 1 << 10, window: 64 << 10})[headerLen:])
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := decodeHello(body)
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v is not errMalformed", err)
			}
			return
		}
		if len(h.cluster) > MaxClusterName || len(h.advertise) > MaxAdvertiseAddr || len(h.app) > MaxAppHello ||
			!utf8.ValidString(h.cluster) || !utf8.ValidString(h.advertise) {
			t.Fatalf("accepted out-of-bounds hello %+v", h)
		}
		again, err := decodeHello(appendHello(nil, h)[headerLen:])
		if err != nil || again.cluster != h.cluster || again.advertise != h.advertise || again.nonce != h.nonce ||
			again.window != h.window || again.maxDatagram != h.maxDatagram || !bytes.Equal(again.app, h.app) {
			t.Fatalf("re-encoding changed %+v into %+v (%v)", h, again, err)
		}
	})
}

func FuzzDecodeClose(f *testing.F) {
	f.Add(appendClose(nil, closeCluster, "cluster name mismatch")[headerLen:])
	f.Add([]byte{0})
	f.Add([]byte{3, 0xc3})
	f.Fuzz(func(t *testing.T, body []byte) {
		code, reason, err := decodeClose(body)
		if err != nil {
			return
		}
		if !utf8.ValidString(reason) || len(reason) > maxCloseReason {
			t.Fatalf("accepted reason %q", reason)
		}
		c2, r2, err := decodeClose(appendClose(nil, code, reason)[headerLen:])
		if err != nil || c2 != code || r2 != reason {
			t.Fatalf("round trip: %v %q %v", c2, r2, err)
		}
		_ = code.String()
	})
}

func FuzzDecodeData(f *testing.F) {
	f.Add(appendData(nil, 1, 0, []byte("hello"))[headerLen:])
	f.Add(appendData(nil, 1<<63, 1<<62, nil)[headerLen:])
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, body []byte) {
		seq, ack, payload, err := decodeData(body)
		if err != nil {
			return
		}
		if len(payload) > len(body) {
			t.Fatal("payload longer than body")
		}
		s2, a2, p2, err := decodeData(appendData(nil, seq, ack, payload)[headerLen:])
		if err != nil || s2 != seq || a2 != ack || !bytes.Equal(p2, payload) {
			t.Fatalf("round trip: %d %d %v", s2, a2, err)
		}
	})
}

func FuzzDecodeStreamData(f *testing.F) {
	f.Add(appendStreamData(nil, 3, []byte("bytes"))[headerLen:])
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, body []byte) {
		id, payload, err := decodeStreamData(body)
		if err != nil {
			return
		}
		if len(payload) == 0 {
			t.Fatal("accepted empty SDATA")
		}
		i2, p2, err := decodeStreamData(appendStreamData(nil, id, payload)[headerLen:])
		if err != nil || i2 != id || !bytes.Equal(p2, payload) {
			t.Fatalf("round trip: %d %v", i2, err)
		}
	})
}

// FuzzDecodeUvarints covers the ACK, PING, PONG, SOPEN, SCLOSE (one varint)
// and SCREDIT (two varints) bodies.
func FuzzDecodeUvarints(f *testing.F) {
	f.Add(appendUvarintRecord(nil, recAck, 1<<40)[headerLen:], false)
	f.Add(appendUvarintRecord(nil, recSCredit, 3, 1<<20)[headerLen:], true)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, false)
	f.Fuzz(func(t *testing.T, body []byte, two bool) {
		var a, b uint64
		var err error
		if two {
			err = decodeUvarints(body, "SCREDIT", &a, &b)
		} else {
			err = decodeUvarints(body, "ACK", &a)
		}
		if err != nil {
			if !errors.Is(err, errMalformed) {
				t.Fatalf("error %v is not errMalformed", err)
			}
			return
		}
		var re []byte
		if two {
			re = appendUvarintRecord(nil, recSCredit, a, b)[headerLen:]
		} else {
			re = appendUvarintRecord(nil, recAck, a)[headerLen:]
		}
		var a2, b2 uint64
		if two {
			err = decodeUvarints(re, "SCREDIT", &a2, &b2)
		} else {
			err = decodeUvarints(re, "ACK", &a2)
		}
		if err != nil || a2 != a || b2 != b {
			t.Fatalf("round trip: %d %d %v", a2, b2, err)
		}
	})
}
