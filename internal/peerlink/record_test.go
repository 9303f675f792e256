package peerlink

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"
)

var established = recordLimits{established: true, maxDatagram: DefaultMaxDatagram}

func TestRecordRoundTrip(t *testing.T) {
	h := hello{version: 1, cluster: "c", advertise: "10.0.0.1:2380", nonce: 42, maxDatagram: 1 << 20,
		window: 4 << 20, app: []byte("app")}
	var b []byte
	b = appendHello(b, h)
	b = appendUvarintRecord(b, recReady)
	pre := len(b)
	b = appendData(b, 7, 6, []byte("payload"))
	b = appendUvarintRecord(b, recAck, 1<<40)
	b = appendUvarintRecord(b, recPing, 3)
	b = appendStreamData(b, 5, []byte("stream bytes"))
	b = appendUvarintRecord(b, recSCredit, 5, 1000)
	b = appendClose(b, closeDuplicate, "because")

	br := bufio.NewReader(bytes.NewReader(b))
	var scratch []byte
	typ, body, err := readRecord(br, recordLimits{}, &scratch)
	if err != nil || typ != recHello {
		t.Fatalf("hello: %v %v", typ, err)
	}
	got, err := decodeHello(body)
	if err != nil || got.cluster != h.cluster || got.advertise != h.advertise || got.nonce != 42 ||
		got.maxDatagram != h.maxDatagram || got.window != h.window || string(got.app) != "app" {
		t.Fatalf("hello round trip: %+v, %v", got, err)
	}
	if typ, body, err = readRecord(br, recordLimits{}, &scratch); err != nil || typ != recReady || len(body) != 0 {
		t.Fatalf("ready: %v %v %v", typ, body, err)
	}
	if _, _, err := readRecord(bufio.NewReader(bytes.NewReader(b[pre:])), recordLimits{}, &scratch); !errors.Is(err, errMalformed) {
		t.Fatalf("DATA before READY: %v, want malformed", err)
	}
	typ, body, _ = readRecord(br, established, &scratch)
	seq, ack, payload, err := decodeData(body)
	if typ != recData || err != nil || seq != 7 || ack != 6 || string(payload) != "payload" {
		t.Fatalf("data: %v %v %v %q %v", typ, seq, ack, payload, err)
	}
	var v, w uint64
	typ, body, _ = readRecord(br, established, &scratch)
	if err := decodeUvarints(body, "ACK", &v); typ != recAck || err != nil || v != 1<<40 {
		t.Fatalf("ack: %v %v %v", typ, v, err)
	}
	typ, body, _ = readRecord(br, established, &scratch)
	if err := decodeUvarints(body, "PING", &v); typ != recPing || err != nil || v != 3 {
		t.Fatalf("ping: %v %v %v", typ, v, err)
	}
	typ, body, _ = readRecord(br, established, &scratch)
	id, sp, err := decodeStreamData(body)
	if typ != recSData || err != nil || id != 5 || string(sp) != "stream bytes" {
		t.Fatalf("sdata: %v %v %q %v", typ, id, sp, err)
	}
	typ, body, _ = readRecord(br, established, &scratch)
	if err := decodeUvarints(body, "SCREDIT", &v, &w); typ != recSCredit || err != nil || v != 5 || w != 1000 {
		t.Fatalf("credit: %v %v %v %v", typ, v, w, err)
	}
	typ, body, _ = readRecord(br, established, &scratch)
	code, reason, err := decodeClose(body)
	if typ != recClose || err != nil || code != closeDuplicate || reason != "because" {
		t.Fatalf("close: %v %v %q %v", typ, code, reason, err)
	}
	if _, _, err := readRecord(br, established, &scratch); err != io.EOF {
		t.Fatalf("end: %v, want EOF", err)
	}
}

func TestReadRecordLimits(t *testing.T) {
	hdr := func(typ byte, n uint32) []byte {
		return append([]byte{typ}, binary.BigEndian.AppendUint32(nil, n)...)
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		limits recordLimits
		want   error
	}{
		{"oversized datagram is refused before reading", hdr(recData, DefaultMaxDatagram+dataOverhead+1), established, errMalformed},
		{"4 GiB record", hdr(recData, 1<<32-1), established, errMalformed},
		{"oversized hello", hdr(recHello, maxHello+1), recordLimits{}, errMalformed},
		{"hello after READY", hdr(recHello, 10), established, errMalformed},
		{"unknown type", hdr(99, 0), established, errMalformed},
		{"oversized ping", hdr(recPing, smallBody+1), established, errMalformed},
		{"oversized stream chunk", hdr(recSData, streamChunk+binary.MaxVarintLen64+1), established, errMalformed},
		{"truncated header", []byte{recData, 0}, established, io.ErrUnexpectedEOF},
		{"truncated body", append(hdr(recAck, 3), 1), established, io.ErrUnexpectedEOF},
	} {
		var scratch []byte
		_, _, err := readRecord(bufio.NewReader(bytes.NewReader(tc.in)), tc.limits, &scratch)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestDecodeHelloRejects(t *testing.T) {
	good := hello{version: 1, cluster: "c", advertise: "a:1", maxDatagram: 1 << 20, window: 1 << 20}
	body := func(h hello) []byte { return appendHello(nil, h)[headerLen:] }
	if _, err := decodeHello(body(good)); err != nil {
		t.Fatal(err)
	}
	withExtra := append(body(good), 1, 2, 3)
	if _, err := decodeHello(withExtra); err != nil {
		t.Errorf("trailing extension bytes: %v", err)
	}
	for name, h := range map[string]hello{
		"version 0":       {version: 0, maxDatagram: 1 << 20, window: 1 << 20},
		"long cluster":    {version: 1, cluster: strings.Repeat("x", MaxClusterName+1), maxDatagram: 1 << 20, window: 1 << 20},
		"tiny datagrams":  {version: 1, maxDatagram: 10, window: 1 << 20},
		"huge datagrams":  {version: 1, maxDatagram: 1 << 40, window: 1 << 20},
		"tiny window":     {version: 1, maxDatagram: 1 << 20, window: 1},
		"bad utf-8":       {version: 1, cluster: "\xff", maxDatagram: 1 << 20, window: 1 << 20},
		"long app hello":  {version: 1, maxDatagram: 1 << 20, window: 1 << 20, app: make([]byte, MaxAppHello+1)},
		"long advertise":  {version: 1, advertise: strings.Repeat("a", MaxAdvertiseAddr+1), maxDatagram: 1 << 20, window: 1 << 20},
		"everything zero": {},
	} {
		if _, err := decodeHello(body(h)); !errors.Is(err, errMalformed) {
			t.Errorf("%s: got %v, want malformed", name, err)
		}
	}
	full := body(good)
	for i := range len(full) - 1 {
		if _, err := decodeHello(full[:i]); err == nil {
			t.Errorf("hello truncated to %d bytes accepted", i)
		}
	}
}

func TestCloseReason(t *testing.T) {
	long := strings.Repeat("é", maxCloseReason) // 2 bytes each
	b := appendClose(nil, closeProtocol, long)
	code, reason, err := decodeClose(b[headerLen:])
	if err != nil || code != closeProtocol || len(reason) > maxCloseReason || !utf8.ValidString(reason) {
		t.Fatalf("long reason: %v %d bytes %v", code, len(reason), err)
	}
	if _, _, err := decodeClose(nil); err == nil {
		t.Error("empty CLOSE accepted")
	}
	if _, _, err := decodeClose([]byte{1, 0xff}); err == nil {
		t.Error("non-UTF-8 reason accepted")
	}
	if c, _, err := decodeClose([]byte{200}); err != nil || c.String() != "code 200" {
		t.Errorf("unknown code: %v %v", c, err)
	}
}

func TestDecodeUvarints(t *testing.T) {
	var a, b uint64
	if err := decodeUvarints([]byte{1, 2}, "x", &a, &b); err != nil || a != 1 || b != 2 {
		t.Fatalf("got %d %d %v", a, b, err)
	}
	for name, in := range map[string][]byte{
		"empty":    nil,
		"trailing": {1, 2, 3},
		"short":    {1},
		"overflow": bytes.Repeat([]byte{0xff}, 11),
	} {
		if err := decodeUvarints(in, "x", &a, &b); !errors.Is(err, errMalformed) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}
