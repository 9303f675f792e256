package auth

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

func snapshotBytes(t *testing.T, s *Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.Snapshot().WriteTo(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("WriteTo: %d, %v (wrote %d)", n, err, buf.Len())
	}
	return buf.Bytes()
}

func TestSnapshotRoundTrip(t *testing.T) {
	src := enabledStore(t)
	must[*pb.AuthUserAddResponse](t)(src.UserAdd(&pb.AuthUserAddRequest{Name: "np", Options: &authpb.UserAddOptions{NoPassword: true}}))
	must[*pb.AuthRoleAddResponse](t)(src.RoleAdd(&pb.AuthRoleAddRequest{Name: "empty"}))
	data := snapshotBytes(t, src)

	// The section reads exactly its bytes: what follows stays in the stream.
	r := bytes.NewReader(append(bytes.Clone(data), "rest"...))
	sn, err := ReadSnapshot(r)
	if err != nil {
		t.Fatalf("ReadSnapshot: %v", err)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "rest" {
		t.Fatalf("after the section: %q, want %q", rest, "rest")
	}
	dst := newTestStore(t, Config{})
	dst.Restore(sn)
	if got := snapshotBytes(t, dst); !bytes.Equal(got, data) {
		t.Fatal("restored store writes different bytes")
	}
	if dst.Revision() != src.Revision() || !dst.Enabled() {
		t.Fatalf("restored revision %d enabled %v, want %d true", dst.Revision(), dst.Enabled(), src.Revision())
	}
	// Derived permissions and answers match.
	cs, cd := src.Checker(), dst.Checker()
	u := &AuthInfo{Username: "u", Revision: src.Revision()}
	for _, k := range []string{"r/a", "w/a", "k", "z", "zz", "a", "np"} {
		for _, end := range []string{"", "\x00", k + "\x00"} {
			if a, b := cs.IsRangePermitted(u, []byte(k), []byte(end)), cd.IsRangePermitted(u, []byte(k), []byte(end)); a != b {
				t.Errorf("read %q..%q: source %v, restored %v", k, end, a, b)
			}
			if a, b := cs.IsDeleteRangePermitted(u, []byte(k), []byte(end)), cd.IsDeleteRangePermitted(u, []byte(k), []byte(end)); a != b {
				t.Errorf("write %q..%q: source %v, restored %v", k, end, a, b)
			}
		}
	}
	if _, err := dst.CheckPassword("u", "u"); err != nil {
		t.Errorf("password after restore: %v", err)
	}
	if _, err := dst.CheckPassword("np", ""); !errors.Is(err, ErrNoPasswordUser) {
		t.Errorf("no-password user after restore: %v", err)
	}
	for _, req := range []*pb.AuthRoleGetRequest{{Role: "r"}, {Role: "root"}, {Role: "empty"}} {
		a, _ := src.RoleGet(req)
		b, _ := dst.RoleGet(req)
		if a.String() != b.String() {
			t.Errorf("RoleGet %s: %v vs %v", req.Role, a, b)
		}
	}

	// A fresh store's snapshot restores to a fresh state.
	empty := snapshotBytes(t, newTestStore(t, Config{}))
	sn, err = ReadSnapshot(bytes.NewReader(empty))
	if err != nil {
		t.Fatal(err)
	}
	dst.Restore(sn)
	if st := dst.AuthStatus(); st.Enabled || st.AuthRevision != 1 {
		t.Fatalf("restored fresh state: %v", st)
	}
	if !bytes.Equal(snapshotBytes(t, dst), empty) {
		t.Fatal("fresh states write different bytes")
	}
	var buf bytes.Buffer
	if _, err := EmptySnapshot().WriteTo(&buf); err != nil || !bytes.Equal(buf.Bytes(), empty) {
		t.Fatalf("EmptySnapshot differs from a fresh store's: %v", err)
	}
}

func TestSnapshotRestoreDropsTokens(t *testing.T) {
	s := enabledStoreWith(t, Config{})
	tok := login(t, s, 3, "u")
	sn, err := ReadSnapshot(bytes.NewReader(snapshotBytes(t, newTestStore(t, Config{}))))
	if err != nil {
		t.Fatal(err)
	}
	enabled := s.Snapshot()
	s.Restore(sn)
	s.Restore(enabled)
	if _, err := s.AuthInfoFromToken(t.Context(), tok); !errors.Is(err, ErrInvalidAuthToken) {
		t.Fatalf("token after restoring a disabled state: %v", err)
	}
}

func TestSnapshotCorruption(t *testing.T) {
	data := snapshotBytes(t, enabledStore(t))
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x41
		if _, err := ReadSnapshot(bytes.NewReader(bad)); err == nil {
			t.Fatalf("byte %d flipped: no error", i)
		}
	}
	for n := range len(data) {
		_, err := ReadSnapshot(bytes.NewReader(data[:n]))
		if !errors.Is(err, ErrCorruptSnapshot) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	huge := append([]byte(snapMagic), 0xff, 0xff, 0xff, 0xff, 0x7f)
	if _, err := ReadSnapshot(bytes.NewReader(huge)); !errors.Is(err, ErrCorruptSnapshot) {
		t.Fatalf("huge length: %v", err)
	}
}

// TestDecodeStateChecks feeds payloads with a valid checksum but invalid
// content.
func TestDecodeStateChecks(t *testing.T) {
	bad := map[string][]byte{
		"bad flag":            {2},
		"revision 0":          {0, 0, 0, 0},
		"trailing":            {0, 1, 0, 0, 9},
		"empty user name":     {0, 1, 1, 0, 0, 0, 0, 0},
		"unsorted roles":      append([]byte{0, 1, 1, 1, 'u', 0, 0, 2, 1, 'b', 1, 'a'}, 0),
		"enabled, no root":    {1, 1, 0, 0},
		"bad permission type": {0, 1, 0, 1, 1, 'r', 1, 3, 1, 'k', 0},
		"count beyond":        {0, 1, 200},
	}
	for name, p := range bad {
		if _, err := decodeState(p); !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := decodeState([]byte{0, 1, 0, 0}); err != nil {
		t.Errorf("minimal payload: %v", err)
	}
}

// FuzzReadSnapshot checks that no input makes ReadSnapshot panic, and that
// whatever it accepts writes back to the same bytes.
func FuzzReadSnapshot(f *testing.F) {
	s, err := New(Config{BcryptCost: 4})
	if err != nil {
		f.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.Bytes())
	f.Add([]byte(snapMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		sn, err := ReadSnapshot(bytes.NewReader(data))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if _, err := sn.WriteTo(&out); err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(data, out.Bytes()) {
			t.Fatal("accepted snapshot writes back differently")
		}
	})
}

// FuzzDecodeState feeds payloads past the checksum: no input may panic.
func FuzzDecodeState(f *testing.F) {
	s, err := New(Config{BcryptCost: 4})
	if err != nil {
		f.Fatal(err)
	}
	h, _ := s.HashPassword("x")
	_, _ = s.UserAdd(&pb.AuthUserAddRequest{Name: "root", HashedPassword: h})
	_, _ = s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"})
	_, _ = s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{Key: []byte("a"), RangeEnd: []byte("b")}})
	_, _ = s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "r"})
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		f.Fatal(err)
	}
	data := buf.Bytes()
	f.Add(data[len(snapMagic)+1 : len(data)-4])
	f.Fuzz(func(t *testing.T, p []byte) {
		st, err := decodeState(p)
		if err == nil && st.revision < initialRevision {
			t.Fatal("accepted revision 0")
		}
	})
}

// TestExportImport checks that the state in etcd's messages (as snapshot
// files carry it) comes back identical, and that inconsistent states are
// refused.
func TestExportImport(t *testing.T) {
	src := enabledStore(t)
	must[*pb.AuthUserAddResponse](t)(src.UserAdd(&pb.AuthUserAddRequest{Name: "np", Options: &authpb.UserAddOptions{NoPassword: true}}))
	sn, err := ImportSnapshot(src.Export())
	if err != nil {
		t.Fatal(err)
	}
	var a, b bytes.Buffer
	if _, err := src.Snapshot().WriteTo(&a); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("exported and imported state differs")
	}
	dst := newTestStore(t, Config{})
	dst.Restore(sn)
	if _, err := dst.CheckPassword("u", "u"); err != nil {
		t.Fatalf("password after import: %v", err)
	}

	// An older etcd's state: no options, unsorted roles, revision 0.
	old := Exported{Users: []*authpb.User{{Name: []byte("x"), Roles: []string{"b", "a", "a"}}}}
	sn, err = ImportSnapshot(old)
	if err != nil {
		t.Fatal(err)
	}
	dst.Restore(sn)
	if resp, _ := dst.UserGet(&pb.AuthUserGetRequest{Name: "x"}); strings.Join(resp.Roles, ",") != "a,b" || dst.Revision() != 1 {
		t.Fatalf("old state: roles %v revision %d", resp.Roles, dst.Revision())
	}
	for name, e := range map[string]Exported{
		"enabled without root": {Enabled: true},
		"duplicate user":       {Users: []*authpb.User{{Name: []byte("a")}, {Name: []byte("a")}}},
		"empty role name":      {Roles: []*authpb.Role{{}}},
		"bad permission type":  {Roles: []*authpb.Role{{Name: []byte("r"), KeyPermission: []*authpb.Permission{{PermType: 7, Key: []byte("k")}}}}},
	} {
		if _, err := ImportSnapshot(e); !errors.Is(err, ErrCorruptSnapshot) {
			t.Errorf("%s: %v", name, err)
		}
	}
}
