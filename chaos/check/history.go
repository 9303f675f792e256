package check

import (
	"fmt"
	"time"
)

// OpKind is the kind of a key-value operation in a history.
type OpKind uint8

// Operation kinds.
const (
	// Get reads one key (a linearizable Range).
	Get OpKind = iota + 1
	// Put writes Value to Key.
	Put
	// Delete removes Key; the response says how many keys it deleted.
	Delete
	// CAS writes Value to Key if the key holds Expect (a Txn with a value
	// compare); the response says whether the compare held.
	CAS
)

func (k OpKind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case Delete:
		return "delete"
	case CAS:
		return "cas"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// MarshalText writes the kind as its String form.
func (k OpKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses the String form.
func (k *OpKind) UnmarshalText(b []byte) error {
	for _, c := range []OpKind{Get, Put, Delete, CAS} {
		if c.String() == string(b) {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("check: unknown op kind %q", b)
}

// Outcome is what the client learnt about an operation.
type Outcome uint8

// Outcomes.
const (
	// OK: the cluster answered; the result fields are valid.
	OK Outcome = iota + 1
	// Failed: the operation certainly had no effect (a read that failed, or
	// a write refused before it could be proposed).
	Failed
	// Indeterminate: a write whose fate is unknown (timeout, Unavailable,
	// connection lost). It may have taken effect at any time after its call,
	// or never.
	Indeterminate
)

func (o Outcome) String() string {
	switch o {
	case OK:
		return "ok"
	case Failed:
		return "failed"
	case Indeterminate:
		return "indeterminate"
	}
	return fmt.Sprintf("Outcome(%d)", int(o))
}

// MarshalText writes the outcome as its String form.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText parses the String form.
func (o *Outcome) UnmarshalText(b []byte) error {
	for _, c := range []Outcome{OK, Failed, Indeterminate} {
		if c.String() == string(b) {
			*o = c
			return nil
		}
	}
	return fmt.Errorf("check: unknown outcome %q", b)
}

// Op is one key-value operation as a client saw it.
type Op struct {
	Client int    `json:"client"` // client number, zero-based
	Kind   OpKind `json:"kind"`
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`  // Put, CAS: the value written
	Expect string `json:"expect,omitempty"` // CAS: the value compared against
	// Call and Return are when the client sent the request and got the
	// answer, measured from the start of the run. Return is meaningful only
	// for OK and Failed.
	Call    time.Duration `json:"call"`
	Return  time.Duration `json:"return"`
	Outcome Outcome       `json:"outcome"`

	// Results, valid when Outcome is OK.
	Found     bool   `json:"found,omitempty"`     // Get: the key existed
	Got       string `json:"got,omitempty"`       // Get: the value read
	Deleted   int64  `json:"deleted,omitempty"`   // Delete: keys deleted
	Succeeded bool   `json:"succeeded,omitempty"` // CAS: the compare held
	Rev       int64  `json:"rev,omitempty"`       // the response header's revision
	ModRev    int64  `json:"mod_rev,omitempty"`   // Get: the key's mod revision

	Endpoint string `json:"endpoint,omitempty"` // which endpoint(s) the client used
	Err      string `json:"err,omitempty"`      // the error, for Failed and Indeterminate
}

// String describes the operation and its result, as in a report line.
func (op Op) String() string {
	var s string
	switch op.Kind {
	case Get:
		s = fmt.Sprintf("get(%s)", op.Key)
	case Put:
		s = fmt.Sprintf("put(%s, %q)", op.Key, op.Value)
	case Delete:
		s = fmt.Sprintf("delete(%s)", op.Key)
	case CAS:
		s = fmt.Sprintf("cas(%s, %q -> %q)", op.Key, op.Expect, op.Value)
	default:
		s = fmt.Sprintf("%v(%s)", op.Kind, op.Key)
	}
	switch op.Outcome {
	case OK:
		s += " -> " + op.resultString()
	case Failed:
		s += " -> failed: " + op.Err
	case Indeterminate:
		s += " -> unknown: " + op.Err
	}
	return fmt.Sprintf("client %d [%v..%v] %s", op.Client, op.Call, op.Return, s)
}

func (op Op) resultString() string {
	switch op.Kind {
	case Get:
		if !op.Found {
			return "not found"
		}
		return fmt.Sprintf("%q", op.Got)
	case Delete:
		return fmt.Sprintf("deleted %d", op.Deleted)
	case CAS:
		if op.Succeeded {
			return "swapped"
		}
		return "compare failed"
	}
	return "ok"
}

// IsWrite reports whether the operation can change the store.
func (op Op) IsWrite() bool { return op.Kind != Get }

// Write is a write the cluster acknowledged: it took effect at revision Rev.
type Write struct {
	Key    string `json:"key"`
	Value  string `json:"value,omitempty"`
	Delete bool   `json:"delete,omitempty"`
	Rev    int64  `json:"rev"`
	// Source says which workload made the write (for reports).
	Source string `json:"source,omitempty"`
}

// AckedWrites lists the writes of ops the cluster acknowledged as applied:
// successful Puts, successful CAS swaps, and Deletes that deleted a key.
// Deletes of a missing key and failed compares create no revision.
func AckedWrites(ops []Op) []Write {
	var out []Write
	for _, op := range ops {
		if op.Outcome != OK || op.Rev == 0 {
			continue
		}
		switch {
		case op.Kind == Put, op.Kind == CAS && op.Succeeded:
			out = append(out, Write{Key: op.Key, Value: op.Value, Rev: op.Rev, Source: fmt.Sprintf("client %d", op.Client)})
		case op.Kind == Delete && op.Deleted > 0:
			out = append(out, Write{Key: op.Key, Delete: true, Rev: op.Rev, Source: fmt.Sprintf("client %d", op.Client)})
		}
	}
	return out
}
