package e2e

import (
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// TestKV runs the same etcdctl session of puts, gets with every flag,
// deletes, transactions and compactions against etcd and meshkv.
func TestKV(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t)
	ids := normJSON(serverIDs...)
	txnScript := `value("foo") = "bar2"
mod("zoo") > "0"
version("foo/d") = "1"
create("missing") = "0"

put foo/t1 "then 1"
get foo --prefix --limit=3
del foo/d

put foo/e1 "else"

`
	failingTxn := `value("foo") = "nope"

put foo/t2 then

put foo/e2 "else 2"
get foo/e2
get foo/a foo/z

`
	steps := []step{
		cmd("put", "foo", "bar"),
		cmd("put", "foo/a", "1"),
		cmd("put", "foo/b", "2"),
		cmd("put", "foo/c", "3"),
		cmd("put", "zoo", "z"),
		cmd("put", "foo", "bar2", "--prev-kv"),
		cmd("put", "foo/d", "4", "-w", "json").with(ids),
		cmd("put", "empty", ""),
		cmd("get", "foo"),
		cmd("get", "missing"),
		cmd("get", "foo", "--prefix"),
		cmd("get", "foo", "--prefix", "--keys-only"),
		cmd("get", "foo", "--prefix", "--print-value-only"),
		cmd("get", "foo", "--rev=2"),
		cmd("get", "foo", "--prefix", "--rev=4"),
		cmd("get", "foo", "--prefix", "--limit=2"),
		cmd("get", "foo", "--prefix", "--sort-by=MODIFY", "--order=DESCEND"),
		cmd("get", "foo", "--prefix", "--sort-by=VALUE", "--order=ASCEND"),
		cmd("get", "foo", "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--limit=3"),
		cmd("get", "foo", "--prefix", "--sort-by=VERSION"),
		cmd("get", "foo", "--prefix", "--sort-by=KEY", "--order=DESCEND"),
		cmd("get", "foo", "--prefix", "--order=DESCEND", "--limit=1", "--keys-only"),
		cmd("get", "foo", "--prefix", "-w", "json").with(ids),
		cmd("get", "foo", "--prefix", "--limit=1", "-w", "json").with(ids),
		cmd("get", "foo", "-w", "fields").with(normFields),
		cmd("get", "foo", "--prefix", "--count-only", "-w", "fields").with(normFields),
		cmd("get", "foo", "-w", "protobuf").with(normProtobufRange),
		cmd("get", "--from-key", "foo/b"),
		cmd("get", "--from-key", ""),
		cmd("get", "foo", "zoo"),
		cmd("get", "foo", "--prefix", "--consistency=s"),
		cmd("get", "foo", "--prefix", "--min-mod-revision=4", "--max-mod-revision=6"),
		cmd("get", "foo", "--prefix", "--min-create-revision=3", "--max-create-revision=5", "--keys-only"),
		cmd("get", "foo", "--rev=100").expecting("future revision"),
		cmd("get", ""),
		cmd("del", "foo/a"),
		cmd("del", "missing"),
		cmd("del", "foo/b", "--prev-kv"),
		cmd("del", "foo/b", "foo/d", "--prev-kv", "-w", "json").with(ids),
		cmd("txn").input(txnScript).expecting("SUCCESS"),
		cmd("txn", "-i").input(txnScript),
		cmd("txn", "-w", "json").input(failingTxn).with(ids),
		cmd("txn").input(failingTxn).expecting("FAILURE"),
		cmd("txn").input("put a b\n\n\n"), // a compare that does not parse
		cmd("txn").input("\nput foo/x 1\nput foo/x 2\n\n\n"),
		cmd("get", "", "--prefix", "-w", "json").with(ids),
		cmd("compaction", "3"),
		cmd("get", "foo", "--rev=2").expecting("compacted"),
		cmd("get", "foo", "--rev=3").expecting("bar"),
		cmd("compaction", "3").expecting("compacted"),
		cmd("compaction", "2"),
		cmd("compaction", "--physical", "8"),
		cmd("get", "foo", "--prefix", "--rev=8", "-w", "json").with(ids),
		cmd("compaction", "1000"),
		cmd("del", "foo", "--prefix"),
		cmd("del", "", "--from-key", "--prev-kv"),
		cmd("get", "", "--from-key", "-w", "json").with(ids),
	}
	compareSteps(t, etcd, mkv, steps)
}

// TestLimitFlags starts both servers with small --max-txn-ops and
// --max-request-bytes and compares how etcdctl requests beyond them fail.
func TestLimitFlags(t *testing.T) {
	t.Parallel()
	etcd, mkv := startPair(t, "--max-txn-ops=3", "--max-request-bytes=1024")
	big := strings.Repeat("x", 2000)
	compareSteps(t, etcd, mkv, []step{
		cmd("put", "small", strings.Repeat("s", 900)),
		cmd("put", "big", big).expecting("request is too large"),
		cmd("txn").input("\nput a 1\nput b 2\nput c 3\n\n\n").expecting("SUCCESS"),
		cmd("txn").input("\nput a 1\nput b 2\nput c 3\nput d 4\n\n\n").expecting("too many operations"),
		cmd("txn").input("version(\"a\") = \"1\"\nversion(\"b\") = \"1\"\nversion(\"c\") = \"1\"\nversion(\"d\") = \"0\"\n\n\n\n").expecting("too many operations"),
		cmd("txn").input("\nput a " + big[:600] + "\nput b " + big[:600] + "\n\n\n").expecting("request is too large"),
		cmd("get", "", "--prefix", "--keys-only"),
	})
}

// normProtobufRange decodes etcdctl's -w protobuf output of a get (a
// RangeResponse as encoded on the wire), clears the header fields that name
// the server and re-encodes it.
func normProtobufRange(_ *server, out string) string {
	resp := new(pb.RangeResponse)
	if err := proto.Unmarshal([]byte(out), resp); err != nil {
		return fmt.Sprintf("not a RangeResponse (%v): %q", err, out)
	}
	if resp.Header != nil {
		resp.Header.ClusterId, resp.Header.MemberId, resp.Header.RaftTerm = 0, 0, 0
	}
	return prototext.MarshalOptions{}.Format(resp)
}
