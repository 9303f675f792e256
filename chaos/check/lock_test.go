package check

import (
	"strings"
	"testing"
	"time"
)

func acq(holder string, token int64, call, ret int) Acquisition {
	return Acquisition{Holder: holder, Token: token, Call: time.Duration(call) * ms, Return: time.Duration(ret) * ms}
}

func TestLocksValid(t *testing.T) {
	acqs := []Acquisition{acq("A", 10, 0, 5), acq("B", 14, 3, 40), acq("A", 20, 30, 60)}
	chain := []CounterVersion{
		{Rev: 11, Holder: "A", Token: 10, Counter: 1},
		{Rev: 12, Holder: "A", Token: 10, Counter: 2},
		{Rev: 16, Holder: "B", Token: 14, Counter: 3},
		{Rev: 21, Holder: "A", Token: 20, Counter: 4},
	}
	acked := []GuardedWrite{
		{Holder: "A", Token: 10, Counter: 1, Rev: 11},
		{Holder: "B", Token: 14, Counter: 3, Rev: 16},
	}
	wantStatus(t, Locks(acqs, acked, chain), Pass)
	wantStatus(t, Locks(nil, nil, nil), Pass)
}

func TestLocksViolations(t *testing.T) {
	acqs := []Acquisition{acq("A", 10, 0, 5), acq("B", 14, 6, 8)}
	tests := []struct {
		name  string
		want  string
		acqs  []Acquisition
		acked []GuardedWrite
		chain []CounterVersion
	}{
		{"overlapping holders lose an update", "lost update", acqs, nil, []CounterVersion{
			{Rev: 11, Holder: "A", Token: 10, Counter: 1},
			{Rev: 15, Holder: "B", Token: 14, Counter: 2},
			{Rev: 16, Holder: "A", Token: 10, Counter: 2},
		}},
		{"decreasing token", "fencing token went back", acqs, nil, []CounterVersion{
			{Rev: 15, Holder: "B", Token: 14, Counter: 1},
			{Rev: 16, Holder: "A", Token: 10, Counter: 2},
		}},
		{"one token, two holders", "used by two holders", []Acquisition{acq("A", 10, 0, 5)}, nil, []CounterVersion{
			{Rev: 11, Holder: "A", Token: 10, Counter: 1},
			{Rev: 12, Holder: "B", Token: 10, Counter: 2},
		}},
		{"token handed out twice", "handed to A", []Acquisition{acq("A", 10, 0, 5), acq("B", 10, 6, 8)}, nil, nil},
		{"later lock got a smaller token", "had already locked", []Acquisition{acq("A", 14, 0, 5), acq("B", 10, 6, 8)}, nil, nil},
		{"write with a token nobody got", "no Lock call returned", acqs, nil, []CounterVersion{
			{Rev: 11, Holder: "A", Token: 9, Counter: 1},
		}},
		{"acknowledged guarded write lost", "acknowledged guarded write lost", acqs,
			[]GuardedWrite{{Holder: "A", Token: 10, Counter: 2, Rev: 12}},
			[]CounterVersion{{Rev: 11, Holder: "A", Token: 10, Counter: 1}}},
		{"acknowledged guarded write replaced", "the store has", acqs,
			[]GuardedWrite{{Holder: "A", Token: 10, Counter: 1, Rev: 11}},
			[]CounterVersion{{Rev: 11, Holder: "B", Token: 14, Counter: 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Locks(tc.acqs, tc.acked, tc.chain)
			wantStatus(t, r, Fail)
			if !strings.Contains(strings.Join(r.Violations, "\n"), tc.want) {
				t.Errorf("violations %q do not mention %q", r.Violations, tc.want)
			}
		})
	}
}
