package client36

import (
	"testing"
)

func TestMemberListAndStatus(t *testing.T) {
	n := startNode(t)
	cli := n.client(t)
	ctx := testCtx(t)

	members, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatalf("MemberList: %v", err)
	}
	if len(members.Members) != 1 {
		t.Fatalf("MemberList = %v, want one member", members.Members)
	}
	m := members.Members[0]
	if m.ID == 0 || m.Name != "client36" || m.IsLearner || len(m.ClientURLs) != 1 || m.ClientURLs[0] != "http://"+n.endpoint {
		t.Fatalf("member = %v, want client36 serving http://%s", m, n.endpoint)
	}
	if members.Header.MemberId != m.ID || members.Header.ClusterId == 0 {
		t.Fatalf("MemberList header = %v (member %x)", members.Header, m.ID)
	}

	if _, err := cli.Put(ctx, "s", "1"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	st, err := cli.Status(ctx, n.endpoint)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Header.MemberId != m.ID || st.Leader != m.ID || st.IsLearner {
		t.Fatalf("Status = %v, want member %x leading", st, m.ID)
	}
	if st.Version == "" || st.DbSize <= 0 || st.RaftIndex == 0 || st.RaftTerm == 0 || st.Header.Revision < 2 {
		t.Fatalf("Status = %v", st)
	}
	if len(st.Errors) != 0 {
		t.Fatalf("Status errors = %v", st.Errors)
	}
	// meshkv serves etcd 3.7's API and says so; a 3.6 client works with it
	// as with a 3.7 etcd.
	if st.Version != "3.7.0" || st.StorageVersion != "3.7.0" {
		t.Fatalf("Status versions = %q / %q, want 3.7.0", st.Version, st.StorageVersion)
	}
}
