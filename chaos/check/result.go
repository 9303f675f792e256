package check

import (
	"fmt"
	"strings"
)

// Status is the verdict of one check.
type Status int

// Verdicts. Fail means a violation was found; Inconclusive means the check
// could not decide (for example the linearizability search timed out or the
// read-back failed); Skip means the check did not apply to this run.
const (
	Pass Status = iota + 1
	Fail
	Inconclusive
	Skip
)

func (s Status) String() string {
	switch s {
	case Pass:
		return "pass"
	case Fail:
		return "FAIL"
	case Inconclusive:
		return "inconclusive"
	case Skip:
		return "skip"
	}
	return fmt.Sprintf("Status(%d)", int(s))
}

// MarshalText writes the status as its String form (for JSON reports).
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses the String form (reading saved reports back).
func (s *Status) UnmarshalText(b []byte) error {
	for _, c := range []Status{Pass, Fail, Inconclusive, Skip} {
		if c.String() == string(b) {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("check: unknown status %q", b)
}

// maxViolations bounds how many violations a Result lists; the rest are
// counted in Detail.
const maxViolations = 20

// Result is the outcome of one check.
type Result struct {
	Check      string   `json:"check"`
	Status     Status   `json:"status"`
	Detail     string   `json:"detail,omitempty"`
	Violations []string `json:"violations,omitempty"`
	// Artifacts are files written for this check (history, visualization).
	Artifacts []string `json:"artifacts,omitempty"`
}

// String is a one-line summary followed by one line per listed violation.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", r.Check, r.Status)
	if r.Detail != "" {
		fmt.Fprintf(&b, " (%s)", r.Detail)
	}
	for _, v := range r.Violations {
		fmt.Fprintf(&b, "\n    - %s", v)
	}
	for _, a := range r.Artifacts {
		fmt.Fprintf(&b, "\n    artifact: %s", a)
	}
	return b.String()
}

// violations collects violation messages for one check, keeping the first
// maxViolations.
type violations struct {
	list  []string
	total int
}

func (v *violations) addf(format string, args ...any) {
	v.total++
	if len(v.list) < maxViolations {
		v.list = append(v.list, fmt.Sprintf(format, args...))
	}
}

// result turns the collected violations into a Result: Fail if there are
// any, else Pass with the given detail.
func (v *violations) result(check, passDetail string) Result {
	if v.total == 0 {
		return Result{Check: check, Status: Pass, Detail: passDetail}
	}
	d := fmt.Sprintf("%d violation(s)", v.total)
	if v.total > len(v.list) {
		d += fmt.Sprintf(", first %d listed", len(v.list))
	}
	return Result{Check: check, Status: Fail, Detail: d, Violations: v.list}
}
