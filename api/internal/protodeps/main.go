// Command protodeps writes, as a protobuf FileDescriptorSet, the .proto files
// of etcd's API that meshkv's Lock and Election protos import, with all
// their dependencies. api/gen.sh hands the set to protoc
// (--descriptor_set_in), so the imports compile against exactly the etcd
// API this module links, without .proto sources on disk.
//
// etcd registers its files under their bare names (rpc.proto, kv.proto, ...)
// while its .proto files import them as etcd/api/<pkg>/<name>.proto. The set
// names every file by the path it is imported with.
//
// Usage: go run ./api/internal/protodeps OUTPUT
package main

import (
	"fmt"
	"os"
	"path"

	"go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
)

// roots are the files meshkv's protos import, by their import paths.
var roots = map[string]protoreflect.FileDescriptor{
	"etcd/api/etcdserverpb/rpc.proto": etcdserverpb.File_rpc_proto,
	"etcd/api/mvccpb/kv.proto":        mvccpb.File_kv_proto,
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: protodeps OUTPUT")
		os.Exit(2)
	}
	set, err := collect()
	if err != nil {
		fmt.Fprintln(os.Stderr, "protodeps:", err)
		os.Exit(1)
	}
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(set)
	if err == nil {
		err = os.WriteFile(os.Args[1], data, 0o644)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "protodeps:", err)
		os.Exit(1)
	}
}

// collect returns the roots and their transitive imports, dependencies
// first, as protoc wants them.
func collect() (*descriptorpb.FileDescriptorSet, error) {
	set := new(descriptorpb.FileDescriptorSet)
	done := make(map[string]bool)
	var visit func(importPath string, fd protoreflect.FileDescriptor) error
	visit = func(importPath string, fd protoreflect.FileDescriptor) error {
		if done[importPath] {
			return nil
		}
		done[importPath] = true
		imports := fd.Imports()
		for i := range imports.Len() {
			dep := imports.Get(i).Path()
			depFD, err := lookup(dep)
			if err != nil {
				return fmt.Errorf("%s imports %s: %w", importPath, dep, err)
			}
			if err := visit(dep, depFD); err != nil {
				return err
			}
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		fdp.Name = proto.String(importPath)
		set.File = append(set.File, fdp)
		return nil
	}
	for _, p := range []string{"etcd/api/mvccpb/kv.proto", "etcd/api/etcdserverpb/rpc.proto"} {
		if err := visit(p, roots[p]); err != nil {
			return nil, err
		}
	}
	return set, nil
}

// lookup finds an imported file among the registered ones: by its import
// path, or, for etcd's files, by their registered bare name.
func lookup(importPath string) (protoreflect.FileDescriptor, error) {
	if fd, ok := roots[importPath]; ok {
		return fd, nil
	}
	if fd, err := protoregistry.GlobalFiles.FindFileByPath(importPath); err == nil {
		return fd, nil
	}
	fd, err := protoregistry.GlobalFiles.FindFileByPath(path.Base(importPath))
	if err != nil {
		return nil, fmt.Errorf("not registered in this binary: %w", err)
	}
	return fd, nil
}
