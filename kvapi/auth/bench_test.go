package auth

import (
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// benchStore has auth enabled and user u with one role of n prefix
// permissions.
func benchStore(b *testing.B, n int) (*Store, *AuthInfo) {
	s, err := New(Config{BcryptCost: 4})
	if err != nil {
		b.Fatal(err)
	}
	h, _ := s.HashPassword("x")
	for _, u := range []string{"root", "u"} {
		if _, err := s.UserAdd(&pb.AuthUserAddRequest{Name: u, HashedPassword: h}); err != nil {
			b.Fatal(err)
		}
	}
	_, _ = s.RoleAdd(&pb.AuthRoleAddRequest{Name: "r"})
	for i := range n {
		k := fmt.Sprintf("p%05d/", i)
		_, err := s.RoleGrantPermission(&pb.AuthRoleGrantPermissionRequest{Name: "r", Perm: &authpb.Permission{
			Key: []byte(k), RangeEnd: []byte(k[:len(k)-1] + "0"), PermType: authpb.Permission_READWRITE}})
		if err != nil {
			b.Fatal(err)
		}
	}
	_, _ = s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "u", Role: "r"})
	_, _ = s.UserGrantRole(&pb.AuthUserGrantRoleRequest{User: "root", Role: "root"})
	if _, err := s.AuthEnable(); err != nil {
		b.Fatal(err)
	}
	return s, &AuthInfo{Username: "u", Revision: s.Revision()}
}

func BenchmarkCheckPut(b *testing.B) {
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("perms=%d", n), func(b *testing.B) {
			s, ai := benchStore(b, n)
			r := &pb.PutRequest{Key: []byte(fmt.Sprintf("p%05d/key", n/2))}
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Checker().CheckPut(ai, r, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCheckDisabled(b *testing.B) {
	s, _ := New(Config{})
	r := &pb.PutRequest{Key: []byte("k")}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Checker().CheckPut(nil, r, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSimpleTokenLookup(b *testing.B) {
	s, _ := benchStore(b, 1)
	prefix, _ := s.NewTokenPrefix()
	g, err := s.Authenticate(5, &pb.InternalAuthenticateRequest{Name: "u", SimpleToken: prefix})
	if err != nil {
		b.Fatal(err)
	}
	s.Applied(5)
	tok, _ := s.Token(g)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.AuthInfoFromToken(b.Context(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
}
