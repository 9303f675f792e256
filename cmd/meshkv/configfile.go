package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// maxConfigFile bounds the config file read (etcd's files are a few KiB).
const maxConfigFile = 1 << 20

// transportSecurityKeys maps the keys of etcd's client-transport-security
// section to flag names.
var transportSecurityKeys = map[string]string{
	"cert-file":                    "cert-file",
	"key-file":                     "key-file",
	"client-cert-file":             "client-cert-file",
	"client-key-file":              "client-key-file",
	"client-cert-auth":             "client-cert-auth",
	"trusted-ca-file":              "trusted-ca-file",
	"auto-tls":                     "auto-tls",
	"crl-file":                     "client-crl-file",
	"allowed-hostname":             "client-cert-allowed-hostname",
	"skip-client-san-verification": "",
}

// applyConfigFile reads a YAML config file with etcd's key names and sets the
// flags it names. A key that names no flag is an error (a typo would
// otherwise go unnoticed), except etcd's peer-transport-security section,
// which meshkv refuses like the peer TLS flags.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := readBounded(path, maxConfigFile)
	if err != nil {
		return fmt.Errorf("--config-file: %w", err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("--config-file %s: %v", path, err)
	}
	keys := make([]string, 0, len(doc))
	for k := range doc {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic errors
	for _, key := range keys {
		val := doc[key]
		switch key {
		case "client-transport-security":
			section, ok := val.(map[string]any)
			if !ok && val != nil {
				return fmt.Errorf("--config-file %s: %s: want a mapping", path, key)
			}
			for sub, sv := range section {
				name, known := transportSecurityKeys[sub]
				if !known {
					return fmt.Errorf("--config-file %s: %s.%s: unknown key", path, key, sub)
				}
				if name == "" || isZero(sv) {
					continue
				}
				if err := setFromYAML(fs, name, sv); err != nil {
					return fmt.Errorf("--config-file %s: %s.%s: %v", path, key, sub, err)
				}
			}
		case "peer-transport-security":
			if section, ok := val.(map[string]any); ok {
				for sub, sv := range section {
					if !isZero(sv) {
						return fmt.Errorf("--config-file %s: %s.%s: %s", path, key, sub, whyPeerTLS)
					}
				}
			}
		default:
			if fs.Lookup(key) == nil {
				return fmt.Errorf("--config-file %s: unknown key %q", path, key)
			}
			if key == "config-file" {
				return fmt.Errorf("--config-file %s: a config file cannot name another", path)
			}
			if _, foreign := fs.Lookup(key).Value.(*foreignValue); val == nil || (foreign && isZero(val)) {
				continue
			}
			if err := setFromYAML(fs, key, val); err != nil {
				return fmt.Errorf("--config-file %s: %s: %v", path, key, err)
			}
		}
	}
	return nil
}

// setFromYAML sets a flag from a YAML value: scalars as their text, lists as
// comma-separated values.
func setFromYAML(fs *flag.FlagSet, name string, v any) error {
	s, err := yamlText(v)
	if err != nil {
		return err
	}
	if isDurationFlag(fs, name) {
		if _, err := strconv.ParseInt(s, 10, 64); err == nil {
			// etcd reads its config file as JSON into time.Duration
			// fields: a bare number is nanoseconds.
			s += "ns"
		}
	}
	return fs.Set(name, s)
}

// isDurationFlag reports whether a flag holds a time.Duration.
func isDurationFlag(fs *flag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	if f == nil {
		return false
	}
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, ok = g.Get().(time.Duration)
	return ok
}

func yamlText(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		return strconv.FormatBool(x), nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case uint64:
		return strconv.FormatUint(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), nil
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			s, err := yamlText(e)
			if err != nil {
				return "", err
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ","), nil
	}
	return "", fmt.Errorf("unsupported value %v (%T)", v, v)
}

// isZero reports whether a YAML value is empty: etcd's sample config lists
// every key, most of them empty or false.
func isZero(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case []any:
		return len(x) == 0
	}
	return false
}

func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}
