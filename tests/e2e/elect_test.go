package e2e

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// electionKey matches the key of a candidate (election/<lease id in hex>) in
// etcdctl elect's output.
var electionKey = regexp.MustCompile(`(?m)^(myelection/)[0-9a-f]+$`)

// electRun is what the etcdctl elect processes of one server printed.
type electRun struct {
	observer, first, second string // stdout, lease ids normalized
	codes                   []int  // exit codes: first, second, observer
}

// runElection plays one election against s: an observer (elect -l), a first
// candidate that wins, a second that waits, the first resigning (SIGTERM),
// the second winning, then the second and the observer stopping.
func runElection(t *testing.T, s *server) electRun {
	t.Helper()
	eps := []string{s.endpoint}
	norm := func(out string) string { return electionKey.ReplaceAllString(out, "${1}<lease>") }
	obs := startCtl(t, eps, "elect", "-l", "myelection")
	first := startCtl(t, eps, "elect", "myelection", "proposal-one")
	first.waitOutput(t, "\nproposal-one\n", 20*time.Second)
	obs.waitOutput(t, "\nproposal-one\n", 20*time.Second)
	second := startCtl(t, eps, "elect", "myelection", "proposal-two")
	// The second candidate is queued once its key is in the store.
	deadline := time.Now().Add(20 * time.Second)
	for {
		res := s.ctl(t, "", "get", "myelection/", "--prefix", "--keys-only")
		if strings.Count(res.stdout, "myelection/") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the second candidate never queued: %s", s.kind, res)
		}
		time.Sleep(50 * time.Millisecond) // polling another process's effect
	}
	if out := second.out.String(); out != "" {
		t.Fatalf("%s: the second candidate printed %q while the first leads", s.kind, out)
	}
	var r electRun
	r.codes = append(r.codes, first.stop()) // resigns on SIGTERM
	second.waitOutput(t, "\nproposal-two\n", 20*time.Second)
	obs.waitOutput(t, "\nproposal-two\n", 20*time.Second)
	r.codes = append(r.codes, second.stop())
	r.codes = append(r.codes, obs.stop())
	r.observer, r.first, r.second = norm(obs.out.String()), norm(first.out.String()), norm(second.out.String())
	// After both resigned nobody holds the election.
	if res := s.ctl(t, "", "get", "myelection/", "--prefix", "--keys-only"); res.stdout != "" {
		t.Errorf("%s: election keys left after both candidates resigned: %q", s.kind, res.stdout)
	}
	return r
}

// TestElectCompare runs etcdctl elect (campaigns with proposals, an observer
// with -l) against etcd and against one meshkv process and compares what
// every etcdctl printed and how it exited.
func TestElectCompare(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)

	compareSteps(t, etcd, mkv, []step{
		cmd("elect", "myelection").expecting("no proposal argument but -l not set"),
		cmd("elect", "-l", "myelection", "proposal").expecting("proposal given but -l is set"),
		cmd("elect").expecting("elect takes one election name argument"),
	})

	want := runElection(t, etcd)
	got := runElection(t, mkv)
	// etcd's own run pins the expected content, so the comparison cannot
	// pass vacuously.
	wantObserver := "myelection/<lease>\nproposal-one\nmyelection/<lease>\nproposal-two\n"
	if want.observer != wantObserver {
		t.Errorf("etcd's observer printed %q, expected %q (did etcdctl change?)", want.observer, wantObserver)
	}
	for _, c := range []struct {
		what      string
		got, want string
	}{
		{"observer (elect -l)", got.observer, want.observer},
		{"first candidate", got.first, want.first},
		{"second candidate", got.second, want.second},
	} {
		if c.got != c.want {
			t.Errorf("etcdctl elect, %s:\n--- etcd:\n%s\n--- meshkv:\n%s", c.what, c.want, c.got)
		}
	}
	t.Logf("meshkv: observer printed %q; candidates printed %q and %q; exit codes %v (etcd: %v)", got.observer, got.first, got.second, got.codes, want.codes)
	if !slices.Equal(got.codes, want.codes) {
		t.Errorf("exit codes (first, second, observer): meshkv %v, etcd %v", got.codes, want.codes)
	}
}
