package peerlink

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"time"
)

// rawPeer is a cluster member speaking the protocol by hand, to send what a
// correct implementation never would.
type rawPeer struct {
	id *Identity
	tc *tls.Conn
	br *bufio.Reader
}

func dialRawPeer(t *testing.T, n *testNode) *rawPeer {
	t.Helper()
	id, _ := NewIdentity()
	cert, err := leafCertificate(id, testSecret(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c := dialRaw(t, "", n.Addr())
	tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		NextProtos: []string{alpn}, Certificates: []tls.Certificate{cert}})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	p := &rawPeer{id: id, tc: tc, br: bufio.NewReader(tc)}
	h := hello{version: 1, cluster: "test", nonce: 1, maxDatagram: 1 << 20, window: 1 << 20}
	p.write(t, appendHello(nil, h))
	p.expect(t, recHello)
	p.write(t, appendUvarintRecord(nil, recReady))
	p.expect(t, recReady)
	waitFor(t, 5*time.Second, "raw peer linked", func() bool { return n.rec.isUp(id.PublicKey()) })
	return p
}

func (p *rawPeer) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := p.tc.Write(b); err != nil {
		t.Fatalf("raw peer write: %v", err)
	}
}

// expect reads records, skipping pings, pongs and acks, until one of type
// want arrives; it returns its body.
func (p *rawPeer) expect(t *testing.T, want byte) []byte {
	t.Helper()
	lim := recordLimits{established: want != recHello && want != recReady, maxDatagram: 1 << 20}
	var scratch []byte
	for {
		typ, body, err := readRecord(p.br, lim, &scratch)
		if err != nil {
			t.Fatalf("raw peer waiting for %s: %v", recordName(want), err)
		}
		if typ == want {
			return append([]byte(nil), body...)
		}
		if typ == recPing || typ == recPong || typ == recAck || typ == recSOpen {
			continue
		}
		t.Fatalf("raw peer got %s, want %s", recordName(typ), recordName(want))
	}
}

func TestProtocolViolationsDisconnect(t *testing.T) {
	rec := func(typ byte, body ...byte) []byte {
		b, at := appendHeader(nil, typ)
		return fixLen(append(b, body...), at)
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, n *testNode, p *rawPeer)
		send  []byte
	}{
		{name: "sequence gap", send: appendData(nil, 2, 0, []byte("skipped one"))},
		{name: "repeated sequence", send: append(appendData(nil, 1, 0, nil), appendData(nil, 1, 0, nil)...)},
		{name: "ack of unsent datagram", send: appendUvarintRecord(nil, recAck, 5)},
		{name: "oversized record header", send: append([]byte{recData}, binary.BigEndian.AppendUint32(nil, 64<<20)...)},
		{name: "unknown record type", send: rec(99)},
		{name: "hello after ready", send: appendHello(nil, hello{version: 1, maxDatagram: 1 << 20, window: 1 << 20})},
		{name: "bad ping body", send: rec(recPing, 1, 2)},
		{name: "data on unknown stream", send: appendStreamData(nil, 7, []byte("x"))},
		{name: "stream id of the wrong side", send: appendUvarintRecord(nil, recSOpen, 2)},
		{name: "stream ids out of order", send: appendUvarintRecord(nil, recSOpen, 3)},
		{name: "stream beyond its window", send: func() []byte {
			b := appendUvarintRecord(nil, recSOpen, 1)
			for range 3 { // 96 KiB against a 64 KiB window
				b = appendStreamData(b, 1, make([]byte, streamChunk))
			}
			return b
		}()},
		{name: "credit beyond the window", setup: func(t *testing.T, n *testNode, p *rawPeer) {
			if _, err := n.OpenStream(p.id.PublicKey()); err != nil {
				t.Fatal(err)
			}
			p.expect(t, recSOpen)
		}, send: appendUvarintRecord(nil, recSCredit, 2, 1<<21)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newTestNode(t, func(c *Config) { c.StreamWindow = 64 << 10 })
			p := dialRawPeer(t, n)
			if tc.setup != nil {
				tc.setup(t, n, p)
			}
			p.write(t, tc.send)
			body := p.expect(t, recClose)
			code, reason, err := decodeClose(body)
			if err != nil || code != closeProtocol {
				t.Fatalf("CLOSE %v %q %v, want a protocol violation", code, reason, err)
			}
			t.Logf("closed: %s", reason)
			if _, err := p.br.ReadByte(); err == nil {
				t.Fatal("connection still open after CLOSE")
			}
			waitFor(t, 5*time.Second, "link down", func() bool { return n.rec.count("down") == 1 })
			if r := n.rec.ofKind("down")[0].reason; !errors.Is(r, ErrProtocol) {
				t.Fatalf("down reason %v, want ErrProtocol", r)
			}
			if n.Stats().ProtocolErrors != 1 {
				t.Fatalf("protocol errors = %d", n.Stats().ProtocolErrors)
			}
		})
	}
}

func TestHelloPhaseIsBounded(t *testing.T) {
	n := newTestNode(t)
	id, _ := NewIdentity()
	cert, _ := leafCertificate(id, testSecret(), time.Now())
	c := dialRaw(t, "", n.Addr())
	tc := tls.Client(c, &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true,
		NextProtos: []string{alpn}, Certificates: []tls.Certificate{cert}})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	// A HELLO claiming 1 MiB is refused from its header.
	if _, err := tc.Write(append([]byte{recHello}, binary.BigEndian.AppendUint32(nil, 1<<20)...)); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, tc)
	failures(t, &testNode{Node: n.Node, rec: n.rec}, "hello")
}
