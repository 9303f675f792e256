package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

func put(client int, key, value string, call, ret int, rev int64) Op {
	return Op{Client: client, Kind: Put, Key: key, Value: value, Call: time.Duration(call) * ms, Return: time.Duration(ret) * ms, Outcome: OK, Rev: rev}
}

func get(client int, key, got string, call, ret int, rev int64) Op {
	return Op{Client: client, Kind: Get, Key: key, Got: got, Found: true, Call: time.Duration(call) * ms, Return: time.Duration(ret) * ms, Outcome: OK, Rev: rev}
}

func getMissing(client int, key string, call, ret int, rev int64) Op {
	return Op{Client: client, Kind: Get, Key: key, Call: time.Duration(call) * ms, Return: time.Duration(ret) * ms, Outcome: OK, Rev: rev}
}

func unknown(op Op) Op {
	op.Outcome = Indeterminate
	op.Return = 0
	op.Rev = 0
	op.Err = "context deadline exceeded"
	return op
}

func wantStatus(t *testing.T, r Result, want Status) {
	t.Helper()
	if r.Status != want {
		t.Fatalf("%s = %v, want %v\n%s", r.Check, r.Status, want, r)
	}
	t.Logf("%s", r)
}

func TestLinearizableValid(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
	}{
		{"sequential", []Op{
			put(0, "x", "a", 0, 10, 2),
			get(1, "x", "a", 20, 30, 2),
			{Client: 0, Kind: CAS, Key: "x", Expect: "a", Value: "b", Call: 40 * ms, Return: 50 * ms, Outcome: OK, Succeeded: true, Rev: 3},
			{Client: 1, Kind: CAS, Key: "x", Expect: "a", Value: "c", Call: 60 * ms, Return: 70 * ms, Outcome: OK, Rev: 3},
			get(2, "x", "b", 80, 90, 3),
			{Client: 0, Kind: Delete, Key: "x", Call: 100 * ms, Return: 110 * ms, Outcome: OK, Deleted: 1, Rev: 4},
			{Client: 1, Kind: Delete, Key: "x", Call: 120 * ms, Return: 130 * ms, Outcome: OK, Deleted: 0, Rev: 4},
			getMissing(2, "x", 140, 150, 4),
		}},
		{"concurrent put and get see either value", []Op{
			put(0, "x", "a", 0, 10, 2),
			put(1, "x", "b", 20, 60, 3),
			get(2, "x", "a", 25, 35, 2),
			get(3, "x", "b", 30, 40, 3),
			get(2, "x", "b", 70, 80, 3),
		}},
		{"indeterminate put observed later", []Op{
			unknown(put(0, "x", "a", 0, 0, 0)),
			get(1, "x", "a", 20, 30, 2),
		}},
		{"indeterminate put never observed", []Op{
			put(1, "x", "b", 0, 10, 2),
			unknown(put(0, "x", "a", 20, 0, 0)),
			get(1, "x", "b", 30, 40, 2),
		}},
		{"indeterminate cas swaps only where its compare holds", []Op{
			put(0, "x", "a", 0, 10, 2),
			unknown(Op{Client: 1, Kind: CAS, Key: "x", Expect: "zzz", Value: "b", Call: 20 * ms}),
			get(2, "x", "a", 30, 40, 2),
		}},
		{"failed ops carry no information", []Op{
			put(0, "x", "a", 0, 10, 2),
			{Client: 1, Kind: Get, Key: "x", Got: "garbage", Found: true, Call: 20 * ms, Return: 30 * ms, Outcome: Failed, Err: "unavailable"},
			{Client: 1, Kind: Put, Key: "x", Value: "never", Call: 20 * ms, Return: 30 * ms, Outcome: Failed, Err: "invalid argument"},
			get(2, "x", "a", 40, 50, 2),
		}},
		{"deletes of one key at several revisions", []Op{
			put(0, "x", "a", 0, 10, 2),
			{Client: 0, Kind: Delete, Key: "x", Call: 20 * ms, Return: 30 * ms, Outcome: OK, Deleted: 1, Rev: 3},
			put(0, "x", "b", 40, 50, 4),
			{Client: 1, Kind: Delete, Key: "x", Call: 60 * ms, Return: 70 * ms, Outcome: OK, Deleted: 1, Rev: 5},
			getMissing(2, "x", 80, 90, 5),
		}},
		{"keys are independent", []Op{
			put(0, "x", "a", 0, 10, 2),
			put(1, "y", "b", 0, 10, 3),
			get(2, "y", "b", 20, 30, 3),
			get(2, "x", "a", 20, 30, 3),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantStatus(t, Linearizable(tc.ops, 10*time.Second).Result, Pass)
			wantStatus(t, Revisions(tc.ops), Pass)
		})
	}
}

func TestLinearizableViolations(t *testing.T) {
	tests := []struct {
		name string
		ops  []Op
	}{
		{"stale read", []Op{
			put(0, "x", "a", 0, 10, 2),
			put(0, "x", "b", 20, 30, 3),
			get(1, "x", "a", 40, 50, 3),
		}},
		{"lost write", []Op{
			put(0, "x", "a", 0, 10, 2),
			getMissing(1, "x", 20, 30, 2),
		}},
		{"indeterminate put seen before it was sent", []Op{
			get(1, "x", "a", 0, 10, 2),
			unknown(put(0, "x", "a", 20, 0, 0)),
		}},
		{"read of a value never written", []Op{
			put(0, "x", "a", 0, 10, 2),
			get(1, "x", "ghost", 20, 30, 2),
		}},
		{"cas succeeded against the wrong value", []Op{
			put(0, "x", "a", 0, 10, 2),
			{Client: 1, Kind: CAS, Key: "x", Expect: "b", Value: "c", Call: 20 * ms, Return: 30 * ms, Outcome: OK, Succeeded: true, Rev: 3},
		}},
		{"delete count of a missing key", []Op{
			{Client: 1, Kind: Delete, Key: "x", Call: 0, Return: 10 * ms, Outcome: OK, Deleted: 1, Rev: 2},
		}},
		{"violation next to an unobserved indeterminate put", []Op{
			unknown(put(2, "x", "q", 0, 0, 0)),
			put(0, "x", "a", 0, 10, 2),
			put(0, "x", "b", 20, 30, 3),
			get(1, "x", "a", 40, 50, 3),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := Linearizable(tc.ops, 10*time.Second)
			wantStatus(t, l.Result, Fail)
			if len(l.Violations) == 0 {
				t.Errorf("no description of where the history got stuck")
			}
		})
	}
}

func TestVisualize(t *testing.T) {
	l := Linearizable([]Op{
		put(0, "x", "a", 0, 10, 2),
		put(0, "x", "b", 20, 30, 3),
		get(1, "x", "a", 40, 50, 3),
	}, 10*time.Second)
	path := filepath.Join(t.TempDir(), "viz.html")
	if err := l.Visualize(path); err != nil {
		t.Fatalf("Visualize: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "<html") || !strings.Contains(string(b), `put(x, \"b\")`) {
		t.Errorf("visualization does not look like porcupine's HTML with the history (%d bytes)", len(b))
	}
	var empty Linearization
	if err := empty.Visualize(path); err == nil {
		t.Error("Visualize of an unchecked result: no error")
	}
}

func TestRevisionsViolations(t *testing.T) {
	tests := []struct {
		name, want string
		ops        []Op
	}{
		{"stale header revision", "stale read", []Op{
			put(0, "x", "a", 0, 10, 5),
			getMissing(1, "y", 20, 30, 4),
		}},
		{"write revision goes back", "acknowledged at revision", []Op{
			put(0, "x", "a", 0, 10, 5),
			put(1, "y", "b", 20, 30, 4),
		}},
		{"two writes at one revision", "two writes acknowledged at revision", []Op{
			put(0, "x", "a", 0, 10, 5),
			put(1, "y", "b", 5, 30, 5),
		}},
		{"mod revision of a read value", "mod revision", []Op{
			put(0, "x", "a", 0, 10, 5),
			func() Op { o := get(1, "x", "a", 20, 30, 6); o.ModRev = 6; return o }(),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Revisions(tc.ops)
			wantStatus(t, r, Fail)
			if !strings.Contains(strings.Join(r.Violations, "\n"), tc.want) {
				t.Errorf("violations %q do not mention %q", r.Violations, tc.want)
			}
		})
	}
}

func TestAckedWrites(t *testing.T) {
	ops := []Op{
		put(0, "x", "a", 0, 10, 2),
		unknown(put(0, "x", "b", 20, 0, 0)),
		{Kind: CAS, Key: "x", Value: "c", Outcome: OK, Succeeded: true, Rev: 3},
		{Kind: CAS, Key: "x", Value: "d", Outcome: OK, Rev: 3},
		{Kind: Delete, Key: "x", Outcome: OK, Deleted: 1, Rev: 4},
		{Kind: Delete, Key: "x", Outcome: OK, Deleted: 0, Rev: 4},
		get(0, "x", "a", 0, 1, 4),
	}
	got := AckedWrites(ops)
	if len(got) != 3 || got[0].Value != "a" || got[1].Value != "c" || !got[2].Delete || got[2].Rev != 4 {
		t.Errorf("AckedWrites = %+v, want put a@2, cas c@3, delete@4", got)
	}
}

func TestTextForms(t *testing.T) {
	for _, k := range []OpKind{Get, Put, Delete, CAS} {
		b, _ := k.MarshalText()
		var back OpKind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Errorf("OpKind %v round trip = %v, %v", k, back, err)
		}
	}
	for _, o := range []Outcome{OK, Failed, Indeterminate} {
		b, _ := o.MarshalText()
		var back Outcome
		if err := back.UnmarshalText(b); err != nil || back != o {
			t.Errorf("Outcome %v round trip = %v, %v", o, back, err)
		}
	}
	var k OpKind
	if err := k.UnmarshalText([]byte("frobnicate")); err == nil {
		t.Error("unknown op kind parsed")
	}
	var o Outcome
	if err := o.UnmarshalText([]byte("maybe")); err == nil {
		t.Error("unknown outcome parsed")
	}
}
