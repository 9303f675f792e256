package peerlink

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// Wire format inside TLS. Every record is a 5-byte header (type, body length
// as big-endian uint32) and a body. Integers in bodies are unsigned varints.
//
//	HELLO   version, cluster name, advertise address, link nonce (8 bytes),
//	        max datagram, stream window, app bytes; later versions may append
//	        fields, which older decoders ignore
//	READY   empty: the sender authorized the link
//	CLOSE   code (1 byte), reason (UTF-8 text, at most maxCloseReason bytes)
//	DATA    sequence number, cumulative ack, payload
//	ACK     cumulative ack
//	PING    id
//	PONG    id of the ping it answers
//	SOPEN   stream id
//	SDATA   stream id, bytes
//	SCREDIT stream id, bytes of credit granted
//	SCLOSE  stream id
//
// Before READY only HELLO, READY and CLOSE are allowed; after it everything
// but HELLO and READY. Each type has a maximum body length that is checked
// before anything is allocated.
const (
	recHello   byte = 1
	recReady   byte = 2
	recClose   byte = 3
	recData    byte = 4
	recAck     byte = 5
	recPing    byte = 6
	recPong    byte = 7
	recSOpen   byte = 8
	recSData   byte = 9
	recSCredit byte = 10
	recSClose  byte = 11
)

const (
	headerLen      = 5
	maxHello       = 1 << 10
	maxCloseReason = 256
	// streamChunk is the largest SDATA payload.
	streamChunk = 32 << 10
	// dataOverhead bounds the varints in front of a DATA payload.
	dataOverhead = 2 * binary.MaxVarintLen64
	// smallBody bounds control records (a few varints).
	smallBody = 2 * binary.MaxVarintLen64
	// helloVersion is the protocol version we speak.
	helloVersion = 1
)

// errMalformed is wrapped by every decoding error.
var errMalformed = errors.New("malformed record")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errMalformed, fmt.Sprintf(format, args...))
}

// recordName is for logs and errors.
func recordName(t byte) string {
	switch t {
	case recHello:
		return "HELLO"
	case recReady:
		return "READY"
	case recClose:
		return "CLOSE"
	case recData:
		return "DATA"
	case recAck:
		return "ACK"
	case recPing:
		return "PING"
	case recPong:
		return "PONG"
	case recSOpen:
		return "SOPEN"
	case recSData:
		return "SDATA"
	case recSCredit:
		return "SCREDIT"
	case recSClose:
		return "SCLOSE"
	}
	return fmt.Sprintf("type %d", t)
}

// recordLimits says which record types are allowed and how long each body
// may be.
type recordLimits struct {
	established bool // after READY
	maxDatagram int  // our own MaxDatagram
}

// maxBody returns the largest allowed body for t, or -1 when t is not
// allowed now.
func (l recordLimits) maxBody(t byte) int {
	if !l.established {
		switch t {
		case recHello:
			return maxHello
		case recReady:
			return 0
		case recClose:
			return 1 + maxCloseReason
		}
		return -1
	}
	switch t {
	case recClose:
		return 1 + maxCloseReason
	case recData:
		return dataOverhead + l.maxDatagram
	case recSData:
		return binary.MaxVarintLen64 + streamChunk
	case recAck, recPing, recPong, recSOpen, recSCredit, recSClose:
		return smallBody
	}
	return -1
}

// ownsBody reports whether readRecord allocates a fresh body for t (whose
// payload is handed on) rather than reusing the scratch buffer.
func ownsBody(t byte) bool { return t == recData || t == recSData }

// readRecord reads one record from br. The header is checked against
// limits before the body is allocated. DATA and SDATA bodies are freshly
// allocated (their payloads are handed on); other bodies reuse *scratch,
// which is grown as needed and valid until the next call.
func readRecord(br *bufio.Reader, limits recordLimits, scratch *[]byte) (byte, []byte, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, nil, err
	}
	t := hdr[0]
	n := binary.BigEndian.Uint32(hdr[1:])
	limit := limits.maxBody(t)
	if limit < 0 {
		return 0, nil, malformed("unexpected record %s", recordName(t))
	}
	if uint64(n) > uint64(limit) {
		return 0, nil, malformed("%s record of %d bytes exceeds %d", recordName(t), n, limit)
	}
	var body []byte
	if ownsBody(t) {
		body = make([]byte, n)
	} else {
		if cap(*scratch) < int(n) {
			*scratch = make([]byte, n)
		}
		body = (*scratch)[:n]
	}
	if _, err := io.ReadFull(br, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return t, body, nil
}

// appendHeader appends a record header; fixLen fills in the length once the
// body has been appended.
func appendHeader(b []byte, t byte) ([]byte, int) {
	at := len(b)
	return append(b, t, 0, 0, 0, 0), at
}

func fixLen(b []byte, at int) []byte {
	binary.BigEndian.PutUint32(b[at+1:], uint32(len(b)-at-headerLen))
	return b
}

// appendUvarintRecord appends a record whose body is the given varints.
func appendUvarintRecord(b []byte, t byte, vs ...uint64) []byte {
	b, at := appendHeader(b, t)
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return fixLen(b, at)
}

func appendData(b []byte, seq, ack uint64, payload []byte) []byte {
	b, at := appendHeader(b, recData)
	b = binary.AppendUvarint(b, seq)
	b = binary.AppendUvarint(b, ack)
	b = append(b, payload...)
	return fixLen(b, at)
}

func appendStreamData(b []byte, id uint64, payload []byte) []byte {
	b, at := appendHeader(b, recSData)
	b = binary.AppendUvarint(b, id)
	b = append(b, payload...)
	return fixLen(b, at)
}

func appendClose(b []byte, code closeCode, reason string) []byte {
	reason = truncateUTF8(reason, maxCloseReason)
	b, at := appendHeader(b, recClose)
	b = append(b, byte(code))
	b = append(b, reason...)
	return fixLen(b, at)
}

// uvarintAt decodes one varint from b[*off:] and advances *off.
func uvarintAt(b []byte, off *int, what string) (uint64, error) {
	v, n := binary.Uvarint(b[*off:])
	if n <= 0 {
		return 0, malformed("bad varint for %s", what)
	}
	*off += n
	return v, nil
}

// decodeUvarints decodes a body of exactly len(out) varints.
func decodeUvarints(body []byte, what string, out ...*uint64) error {
	off := 0
	for _, p := range out {
		v, err := uvarintAt(body, &off, what)
		if err != nil {
			return err
		}
		*p = v
	}
	if off != len(body) {
		return malformed("%d trailing bytes in %s", len(body)-off, what)
	}
	return nil
}

// decodeData splits a DATA body; payload aliases body.
func decodeData(body []byte) (seq, ack uint64, payload []byte, err error) {
	off := 0
	if seq, err = uvarintAt(body, &off, "DATA sequence"); err != nil {
		return 0, 0, nil, err
	}
	if ack, err = uvarintAt(body, &off, "DATA ack"); err != nil {
		return 0, 0, nil, err
	}
	return seq, ack, body[off:], nil
}

// decodeStreamData splits an SDATA body; payload aliases body.
func decodeStreamData(body []byte) (id uint64, payload []byte, err error) {
	off := 0
	if id, err = uvarintAt(body, &off, "SDATA stream id"); err != nil {
		return 0, nil, err
	}
	if off == len(body) {
		return 0, nil, malformed("empty SDATA")
	}
	return id, body[off:], nil
}

// closeCode says why a link is closed; it travels in CLOSE records.
type closeCode byte

const (
	closeShutdown     closeCode = 1 // the sender is shutting down
	closeDuplicate    closeCode = 2 // another link to the same peer won
	closeSelf         closeCode = 3 // the sender is the receiver
	closeCluster      closeCode = 4 // cluster names differ
	closeUnauthorized closeCode = 5 // Authorize refused
	closeProtocol     closeCode = 6 // protocol violation
	closeVersion      closeCode = 7 // no common protocol version
	closeDead         closeCode = 8 // the sender declared the link dead
)

func (c closeCode) String() string {
	switch c {
	case closeShutdown:
		return "shutdown"
	case closeDuplicate:
		return "duplicate"
	case closeSelf:
		return "self"
	case closeCluster:
		return "cluster mismatch"
	case closeUnauthorized:
		return "unauthorized"
	case closeProtocol:
		return "protocol violation"
	case closeVersion:
		return "version"
	case closeDead:
		return "dead"
	}
	return fmt.Sprintf("code %d", byte(c))
}

// decodeClose parses a CLOSE body. Unknown codes are accepted (a newer peer
// may know more reasons); the reason must be valid UTF-8.
func decodeClose(body []byte) (closeCode, string, error) {
	if len(body) == 0 {
		return 0, "", malformed("empty CLOSE")
	}
	if len(body)-1 > maxCloseReason {
		return 0, "", malformed("CLOSE reason of %d bytes", len(body)-1)
	}
	reason := body[1:]
	if !utf8.Valid(reason) {
		return 0, "", malformed("CLOSE reason is not UTF-8")
	}
	return closeCode(body[0]), string(reason), nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// hello is what each side says about itself after TLS.
type hello struct {
	version     uint64
	cluster     string
	advertise   string
	nonce       uint64 // chosen by the dialler; orders duplicate links
	maxDatagram uint64 // largest DATA payload the sender accepts
	window      uint64 // the sender's receive window per stream
	app         []byte
}

func appendHello(b []byte, h hello) []byte {
	b, at := appendHeader(b, recHello)
	b = binary.AppendUvarint(b, h.version)
	b = binary.AppendUvarint(b, uint64(len(h.cluster)))
	b = append(b, h.cluster...)
	b = binary.AppendUvarint(b, uint64(len(h.advertise)))
	b = append(b, h.advertise...)
	b = binary.BigEndian.AppendUint64(b, h.nonce)
	b = binary.AppendUvarint(b, h.maxDatagram)
	b = binary.AppendUvarint(b, h.window)
	b = binary.AppendUvarint(b, uint64(len(h.app)))
	b = append(b, h.app...)
	return fixLen(b, at)
}

// decodeHello parses and checks a HELLO body. Trailing bytes after the known
// fields are ignored for forward compatibility.
func decodeHello(body []byte) (hello, error) {
	var h hello
	if len(body) > maxHello {
		return h, malformed("HELLO of %d bytes", len(body))
	}
	off := 0
	var err error
	if h.version, err = uvarintAt(body, &off, "HELLO version"); err != nil {
		return h, err
	}
	if h.version == 0 {
		return h, malformed("HELLO version 0")
	}
	str := func(limit int, what string) ([]byte, error) {
		n, err := uvarintAt(body, &off, what)
		if err != nil {
			return nil, err
		}
		if n > uint64(limit) || n > uint64(len(body)-off) {
			return nil, malformed("%s of %d bytes", what, n)
		}
		s := body[off : off+int(n)]
		off += int(n)
		return s, nil
	}
	cluster, err := str(MaxClusterName, "cluster name")
	if err != nil {
		return h, err
	}
	advertise, err := str(MaxAdvertiseAddr, "advertise address")
	if err != nil {
		return h, err
	}
	if !utf8.Valid(cluster) || !utf8.Valid(advertise) {
		return h, malformed("HELLO text is not UTF-8")
	}
	h.cluster, h.advertise = string(cluster), string(advertise)
	if len(body)-off < 8 {
		return h, malformed("short HELLO nonce")
	}
	h.nonce = binary.BigEndian.Uint64(body[off:])
	off += 8
	if h.maxDatagram, err = uvarintAt(body, &off, "HELLO max datagram"); err != nil {
		return h, err
	}
	if h.maxDatagram < minDatagramLimit || h.maxDatagram > maxDatagramLimit {
		return h, malformed("HELLO max datagram %d", h.maxDatagram)
	}
	if h.window, err = uvarintAt(body, &off, "HELLO stream window"); err != nil {
		return h, err
	}
	if h.window < minStreamWindow || h.window > maxStreamWindow {
		return h, malformed("HELLO stream window %d", h.window)
	}
	app, err := str(MaxAppHello, "app hello")
	if err != nil {
		return h, err
	}
	h.app = append([]byte(nil), app...)
	return h, nil
}
