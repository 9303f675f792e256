package e2e

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEndpointHealthAndAlarms compares the outputs that do not name the
// server once timings are normalized.
func TestEndpointHealthAndAlarms(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	took := normRegexp(regexp.MustCompile(`\b[0-9.]+(ns|µs|us|ms|s)\b`), "<duration>")
	endpoint := func(s *server, out string) string { return strings.ReplaceAll(out, s.endpoint, "<endpoint>") }
	compareSteps(t, etcd, mkv, []step{
		cmd("endpoint", "health").with(chain(took, endpoint)),
		cmd("endpoint", "health", "-w", "json").with(chain(took, endpoint)),
		cmd("endpoint", "health", "-w", "table").with(chain(took, endpoint, normTableWidths)),
		cmd("alarm", "list"),
	})
}

// TestEndpointStatus checks etcdctl endpoint status in every output format:
// it must succeed, have etcd's columns and JSON fields, and report a single
// member that leads.
func TestEndpointStatus(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	// The simple format divides by the database size: an empty store must
	// not report 0 (etcdctl panicked on that).
	if got := mkv.ctl(t, "", "endpoint", "status"); got.code != 0 || got.errors != "" {
		t.Fatalf("endpoint status on an empty meshkv failed:\n%s", got)
	}
	for _, s := range []*server{etcd, mkv} {
		s.ctl(t, "", "put", "k", "v") // something in the store
	}

	want := etcd.ctl(t, "", "endpoint", "status", "-w", "table")
	got := mkv.ctl(t, "", "endpoint", "status", "-w", "table")
	if got.code != 0 || got.errors != "" {
		t.Fatalf("endpoint status -w table on meshkv failed:\n%s", got)
	}
	wantRows, gotRows := tableRows(t, want.stdout), tableRows(t, got.stdout)
	if !slices.Equal(wantRows[0], gotRows[0]) {
		t.Errorf("endpoint status columns:\n meshkv %q\n etcd   %q", gotRows[0], wantRows[0])
	}
	if len(gotRows) != 2 {
		t.Fatalf("endpoint status -w table: want one row, got:\n%s", got.stdout)
	}
	row := columns(gotRows)
	wantCell(t, row, "ENDPOINT", mkv.endpoint)
	wantCell(t, row, "IS LEADER", "true")
	wantCell(t, row, "IS LEARNER", "false")
	wantCell(t, row, "ERRORS", "")
	for _, col := range []string{"ID", "VERSION", "DB SIZE", "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX"} {
		if row[col] == "" || row[col] == "0" {
			t.Errorf("endpoint status column %s is %q", col, row[col])
		}
	}

	want = etcd.ctl(t, "", "endpoint", "status", "-w", "json")
	got = mkv.ctl(t, "", "endpoint", "status", "-w", "json")
	if got.code != 0 {
		t.Fatalf("endpoint status -w json on meshkv failed:\n%s", got)
	}
	if w, g := jsonKeyPaths(t, want.stdout), jsonKeyPaths(t, got.stdout); !slices.Equal(w, g) {
		t.Errorf("endpoint status JSON fields:\n meshkv %v\n etcd   %v", g, w)
	}
	var st []struct {
		Endpoint string
		Status   struct {
			Header struct {
				MemberID uint64 `json:"member_id"`
				Revision int64
			}
			Version          string
			DBSize           int64  `json:"dbSize"`
			Leader           uint64 `json:"leader"`
			RaftIndex        uint64 `json:"raftIndex"`
			RaftAppliedIndex uint64 `json:"raftAppliedIndex"`
			RaftTerm         uint64 `json:"raftTerm"`
		}
	}
	if err := json.Unmarshal([]byte(got.stdout), &st); err != nil || len(st) != 1 {
		t.Fatalf("endpoint status JSON: %v\n%s", err, got.stdout)
	}
	s := st[0].Status
	if st[0].Endpoint != mkv.endpoint {
		t.Errorf("endpoint status JSON: Endpoint %q, want %q", st[0].Endpoint, mkv.endpoint)
	}
	if s.Leader == 0 || s.Leader != s.Header.MemberID {
		t.Errorf("endpoint status JSON: leader %x, member %x: a lone member must lead", s.Leader, s.Header.MemberID)
	}
	if s.Version == "" || s.DBSize <= 0 || s.RaftTerm == 0 || s.RaftAppliedIndex == 0 || s.RaftIndex < s.RaftAppliedIndex {
		t.Errorf("endpoint status JSON: implausible status %+v", s)
	}

	want = etcd.ctl(t, "", "endpoint", "status")
	got = mkv.ctl(t, "", "endpoint", "status")
	if got.code != 0 || strings.Count(got.stdout, ",") != strings.Count(want.stdout, ",") || !strings.HasPrefix(got.stdout, mkv.endpoint+", ") {
		t.Errorf("endpoint status (simple):\n--- etcd: %s\n--- meshkv: %s", want, got)
	}
}

// TestMemberList checks etcdctl member list in every output format.
func TestMemberList(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)

	want := etcd.ctl(t, "", "member", "list", "-w", "table")
	got := mkv.ctl(t, "", "member", "list", "-w", "table")
	if got.code != 0 {
		t.Fatalf("member list -w table on meshkv failed:\n%s", got)
	}
	wantRows, gotRows := tableRows(t, want.stdout), tableRows(t, got.stdout)
	if !slices.Equal(wantRows[0], gotRows[0]) {
		t.Errorf("member list columns:\n meshkv %q\n etcd   %q", gotRows[0], wantRows[0])
	}
	if len(gotRows) != 2 {
		t.Fatalf("member list -w table: want one member, got:\n%s", got.stdout)
	}
	row := columns(gotRows)
	wantCell(t, row, "STATUS", "started")
	wantCell(t, row, "NAME", memberName)
	wantCell(t, row, "CLIENT ADDRS", mkv.clientURL)
	wantCell(t, row, "IS LEARNER", "false")

	got = mkv.ctl(t, "", "member", "list", "-w", "json")
	var ml struct {
		Header struct {
			MemberID uint64 `json:"member_id"`
		}
		Members []struct {
			ID         uint64
			Name       string
			ClientURLs []string
			IsLearner  bool `json:"isLearner"`
		}
	}
	if err := json.Unmarshal([]byte(got.stdout), &ml); err != nil || got.code != 0 {
		t.Fatalf("member list -w json: %v\n%s", err, got)
	}
	if len(ml.Members) != 1 {
		t.Fatalf("member list -w json: want one member, got %+v", ml.Members)
	}
	m := ml.Members[0]
	if m.ID != ml.Header.MemberID || m.Name != memberName || !slices.Equal(m.ClientURLs, []string{mkv.clientURL}) || m.IsLearner {
		t.Errorf("member list -w json: member %+v, header member %x; want id = header member, name %q, client URLs [%s]", m, ml.Header.MemberID, memberName, mkv.clientURL)
	}

	got = mkv.ctl(t, "", "member", "list")
	fields := strings.Split(strings.TrimSpace(got.stdout), ", ")
	if got.code != 0 || len(fields) != 6 || fields[1] != "started" || fields[2] != memberName || fields[4] != mkv.clientURL || fields[5] != "false" {
		t.Errorf("member list (simple): want id, started, %s, peer URLs, %s, false; got %s", memberName, mkv.clientURL, got)
	}
}

// tableRows parses etcdctl's -w table output into rows of trimmed cells; the
// first row is the header.
func tableRows(t *testing.T, out string) [][]string {
	t.Helper()
	var rows [][]string
	for _, l := range strings.Split(out, "\n") {
		if cells, ok := tableCells(l); ok {
			rows = append(rows, cells)
		}
	}
	if len(rows) == 0 {
		t.Fatalf("not a table:\n%s", out)
	}
	return rows
}

// tableCells returns the trimmed cells of a row of an etcdctl table. etcdctl
// 3.6 draws tables with ASCII ('|', '+'), 3.7 with box-drawing characters.
func tableCells(l string) ([]string, bool) {
	for _, sep := range []string{"|", "│"} {
		if strings.HasPrefix(l, sep) {
			cells := strings.Split(strings.TrimSuffix(strings.TrimPrefix(l, sep), sep), sep)
			for i := range cells {
				cells[i] = strings.TrimSpace(cells[i])
			}
			return cells, true
		}
	}
	return nil, false
}

// tableBorder reports whether l is a border line of an etcdctl table.
func tableBorder(l string) bool {
	return strings.HasPrefix(l, "+") || strings.HasPrefix(l, "┌") || strings.HasPrefix(l, "├") || strings.HasPrefix(l, "└")
}

// columns maps the header of a two-row table to the second row.
func columns(rows [][]string) map[string]string {
	m := map[string]string{}
	for i, h := range rows[0] {
		if i < len(rows[1]) {
			m[h] = rows[1][i]
		}
	}
	return m
}

func wantCell(t *testing.T, row map[string]string, col, want string) {
	t.Helper()
	if got, ok := row[col]; !ok || got != want {
		t.Errorf("column %s: got %q (present %v), want %q", col, got, ok, want)
	}
}

// normTableWidths re-renders a table with single spaces, so that cells of
// different widths compare equal when their content does.
func normTableWidths(_ *server, out string) string {
	var b strings.Builder
	for _, l := range strings.Split(out, "\n") {
		if tableBorder(l) {
			b.WriteString("+\n")
		} else if cells, ok := tableCells(l); ok {
			b.WriteString("|" + strings.Join(cells, "|") + "|\n")
		} else {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}
