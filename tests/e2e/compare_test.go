package e2e

import (
	"bytes"
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// step is one etcdctl invocation, run against both servers.
type step struct {
	args  []string // "{x}" is replaced by the server's variable x
	stdin string
	norm  func(s *server, stdout string) string // nil: compare as printed
	save  func(s *server, stdout string)        // records variables from the output
	want  string                                // etcd's stdout or errors must contain it
}

func cmd(args ...string) step { return step{args: args} }

func (st step) with(norm func(*server, string) string) step {
	st.norm = norm
	return st
}

func (st step) input(stdin string) step {
	st.stdin = stdin
	return st
}

// expecting makes the step check that etcd's output contains want, so that
// the comparison cannot pass vacuously.
func (st step) expecting(want string) step {
	st.want = want
	return st
}

func (st step) saving(save func(*server, string)) step {
	st.save = save
	return st
}

// compareSteps runs each step on etcd and on meshkv and fails on any
// difference in exit code, normalized stdout or error lines.
func compareSteps(t *testing.T, etcd, mkv *server, steps []step) {
	t.Helper()
	for i, st := range steps {
		a, b := runStep(t, etcd, st), runStep(t, mkv, st)
		if st.want != "" && !strings.Contains(a.stdout+a.errors, st.want) {
			t.Errorf("step %d: etcdctl %s: etcd's output lacks %q: %s", i, strings.Join(st.args, " "), st.want, a)
		}
		if a.code != b.code || a.stdout != b.stdout || a.errors != b.errors {
			t.Errorf("step %d: etcdctl %s\n--- etcd: %s\n--- meshkv: %s", i, strings.Join(st.args, " "), a, b)
		}
	}
}

func runStep(t *testing.T, s *server, st step) ctlResult {
	t.Helper()
	args := make([]string, len(st.args))
	for i, a := range st.args {
		for k, v := range s.vars {
			a = strings.ReplaceAll(a, "{"+k+"}", v)
		}
		args[i] = a
	}
	res := s.ctl(t, st.stdin, args...)
	if st.save != nil && res.code == 0 {
		st.save(s, res.stdout)
	}
	if st.norm != nil {
		res.stdout = st.norm(s, res.stdout)
	}
	for k, v := range s.vars {
		res.errors = strings.ReplaceAll(res.errors, v, "{"+k+"}")
	}
	return res
}

// serverIDs are JSON keys whose values name the server, the cluster or the
// raft term, not the data.
var serverIDs = []string{"cluster_id", "member_id", "raft_term"}

// normJSON rewrites the values of the given keys, wherever they occur in the
// JSON output, to a placeholder, and re-encodes it canonically.
func normJSON(keys ...string) func(*server, string) string {
	return func(_ *server, out string) string {
		var docs []string
		dec := json.NewDecoder(strings.NewReader(out))
		dec.UseNumber()
		for dec.More() {
			var v any
			if err := dec.Decode(&v); err != nil {
				return "not JSON (" + err.Error() + "): " + out
			}
			v = replaceKeys(v, keys)
			b, err := json.Marshal(v)
			if err != nil {
				return "cannot re-encode: " + err.Error()
			}
			docs = append(docs, string(b))
		}
		return strings.Join(docs, "\n")
	}
}

func replaceKeys(v any, keys []string) any {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if slices.Contains(keys, k) {
				x[k] = "<" + k + ">"
			} else {
				x[k] = replaceKeys(val, keys)
			}
		}
	case []any:
		for i := range x {
			x[i] = replaceKeys(x[i], keys)
		}
	}
	return v
}

// fieldIDs matches the lines of etcdctl's -w fields output that name the
// server.
var fieldIDs = regexp.MustCompile(`(?m)^"(ClusterID|MemberID|RaftTerm)" : \d+$`)

func normFields(_ *server, out string) string {
	return fieldIDs.ReplaceAllString(out, `"$1" : <id>`)
}

// normRegexp replaces every match of re with repl.
func normRegexp(re *regexp.Regexp, repl string) func(*server, string) string {
	return func(_ *server, out string) string { return re.ReplaceAllString(out, repl) }
}

// normVars replaces the server's variables (such as its lease ids) by their
// names.
func normVars(s *server, out string) string {
	for k, v := range s.vars {
		out = strings.ReplaceAll(out, v, "{"+k+"}")
	}
	return out
}

// chain applies normalizers in order.
func chain(fs ...func(*server, string) string) func(*server, string) string {
	return func(s *server, out string) string {
		for _, f := range fs {
			out = f(s, out)
		}
		return out
	}
}

// jsonKeyPaths lists every key path in a JSON document ("a.b[].c"), to
// compare the shape of two outputs whose values differ.
func jsonKeyPaths(t *testing.T, out string) []string {
	t.Helper()
	var v any
	dec := json.NewDecoder(bytes.NewReader([]byte(out)))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out)
	}
	var paths []string
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				paths = append(paths, prefix+k)
				walk(prefix+k+".", val)
			}
		case []any:
			for _, val := range x {
				walk(strings.TrimSuffix(prefix, ".")+"[].", val)
			}
		}
	}
	walk("", v)
	slices.Sort(paths)
	return slices.Compact(paths)
}
