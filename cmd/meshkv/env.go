package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"
)

// Environment variable prefixes: every flag is MESHKV_<FLAG>, and flags
// shared with etcd are also ETCD_<FLAG>, so that an etcd deployment's
// environment carries over.
const (
	meshkvEnvPrefix = "MESHKV_"
	etcdEnvPrefix   = "ETCD_"
)

// envMap indexes os.Environ-style KEY=VALUE entries.
func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// envName is the variable of a flag under a prefix: --max-txn-ops is
// MESHKV_MAX_TXN_OPS.
func envName(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// lookupEnv returns the value of flag name from the environment, MESHKV_
// first, then ETCD_ for etcd's flags, and the variable it came from.
func lookupEnv(env map[string]string, name string) (value, from string) {
	if v, ok := env[envName(meshkvEnvPrefix, name)]; ok {
		return v, envName(meshkvEnvPrefix, name)
	}
	if isEtcdFlag(name) {
		if v, ok := env[envName(etcdEnvPrefix, name)]; ok {
			return v, envName(etcdEnvPrefix, name)
		}
	}
	return "", ""
}

// applyEnv sets every flag not given on the command line from the
// environment. It returns warnings for variables that are shadowed by the
// command line or name no flag (typos), as etcd does.
func applyEnv(fs *flag.FlagSet, env map[string]string, setOnLine map[string]bool) (warnings []string, err error) {
	known := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		known[envName(meshkvEnvPrefix, f.Name)] = true
		if isEtcdFlag(f.Name) {
			known[envName(etcdEnvPrefix, f.Name)] = true
		}
		if err != nil || f.Name == "config-file" {
			return
		}
		v, from := lookupEnv(env, f.Name)
		if from == "" {
			return
		}
		if setOnLine[f.Name] {
			warnings = append(warnings, fmt.Sprintf("%s is shadowed by --%s on the command line", from, f.Name))
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("%s=%q: %v", from, v, serr)
		}
	})
	if err != nil {
		return nil, err
	}
	var unknown []string
	for k := range env {
		if (strings.HasPrefix(k, meshkvEnvPrefix) || strings.HasPrefix(k, etcdEnvPrefix)) && !known[k] && !ignoredEnv[k] {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	for _, k := range unknown {
		warnings = append(warnings, fmt.Sprintf("environment variable %s names no flag and is ignored", k))
	}
	return warnings, nil
}

// ignoredEnv are variables with these prefixes that are not flags: etcdctl's
// own settings often share a deployment's environment.
var ignoredEnv = map[string]bool{
	"ETCD_UNSUPPORTED_ARCH": true, "MESHKV_SOAK_DURATION": true,
}
