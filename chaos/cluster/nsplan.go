package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Naming and addressing of netns-mode clusters. Everything here is pure (or
// reads /proc only), so that it can be tested without root.
//
// A namespace is named "mkc-<pid>.<start>-<run>-<member>": the owning chaos
// process (its pid and its start time in clock ticks since boot, so that a
// reused pid is not mistaken for the owner), the owner's cluster counter,
// and the member. A later run removes the namespaces whose owner is gone.
//
// Each cluster takes one /24 of 10.201.0.0/16, its slot, chosen under a
// file lock so that parallel runs never share one: member k (1-based) gets
// the node address 10.201.S.k (on lo, for the mesh or the etcd peer port),
// and a client veth whose member end is 10.201.S.(64+k) and whose root end
// is 10.201.S.(128+k). Only the client veths' addresses and routes appear
// in the root namespace; they are what marks a slot as taken.

// nsPrefix starts every namespace name of the chaos harness.
const nsPrefix = "mkc-"

// slotBase is the first octets of every address of a netns cluster.
var slotBase = [2]byte{10, 201}

// owner identifies the process that created a namespace.
type owner struct {
	PID   int
	Start uint64 // start time in clock ticks since boot (/proc/PID/stat field 22)
}

func (o owner) tag() string { return strconv.Itoa(o.PID) + "." + strconv.FormatUint(o.Start, 10) }

// nsName names the namespace of member in cluster run of owner o.
func nsName(o owner, run int, member string) string {
	return fmt.Sprintf("%s%s-%d-%s", nsPrefix, o.tag(), run, member)
}

// parseNSName splits a name made by nsName; ok is false for any other name.
func parseNSName(s string) (o owner, run int, member string, ok bool) {
	rest, found := strings.CutPrefix(s, nsPrefix)
	if !found {
		return owner{}, 0, "", false
	}
	parts := strings.SplitN(rest, "-", 3)
	if len(parts) != 3 || parts[2] == "" {
		return owner{}, 0, "", false
	}
	pid, start, found := strings.Cut(parts[0], ".")
	if !found {
		return owner{}, 0, "", false
	}
	var err error
	if o.PID, err = strconv.Atoi(pid); err != nil || o.PID <= 0 {
		return owner{}, 0, "", false
	}
	if o.Start, err = strconv.ParseUint(start, 10, 64); err != nil {
		return owner{}, 0, "", false
	}
	if run, err = strconv.Atoi(parts[1]); err != nil || run < 0 {
		return owner{}, 0, "", false
	}
	return o, run, parts[2], true
}

// hostVethName names the root end of member k's client veth. Interface
// names have at most 15 bytes; the root end only has to be unique while its
// namespace lives (deleting the namespace deletes the pair).
func hostVethName(o owner, run, k int) (string, error) {
	s := "mk" + strconv.FormatInt(int64(o.PID), 36) + "-" + strconv.FormatInt(int64(run), 36) + "-" + strconv.Itoa(k)
	if len(s) > 15 {
		return "", fmt.Errorf("cluster: interface name %q longer than 15 bytes", s)
	}
	return s, nil
}

// peerVethName names, inside a member's namespace, its end of the veth to
// member k.
func peerVethName(k int) string { return "p" + strconv.Itoa(k) }

// clientVethName is the member end of the client veth.
const clientVethName = "cl"

func slotAddr(slot, last int) netip.Addr {
	return netip.AddrFrom4([4]byte{slotBase[0], slotBase[1], byte(slot), byte(last)})
}

// nodeAddr is member k's node address: the mesh or etcd peer listener.
func nodeAddr(slot, k int) netip.Addr { return slotAddr(slot, k) }

// clientAddr is the member end of member k's client veth.
func clientAddr(slot, k int) netip.Addr { return slotAddr(slot, 64+k) }

// hostAddr is the root end of member k's client veth.
func hostAddr(slot, k int) netip.Addr { return slotAddr(slot, 128+k) }

// slotPrefix is a slot's /24.
func slotPrefix(slot int) netip.Prefix { return netip.PrefixFrom(slotAddr(slot, 0), 24) }

// ErrNoSlot is returned when every /24 of the chaos range is in use.
var ErrNoSlot = errors.New("cluster: no free address slot in 10.201.0.0/16")

// freeSlot returns the lowest slot whose /24 overlaps none of the prefixes
// in use in the root namespace.
func freeSlot(used []netip.Prefix) (int, error) {
	for s := 0; s < 256; s++ {
		p := slotPrefix(s)
		if !slices.ContainsFunc(used, p.Overlaps) {
			return s, nil
		}
	}
	return 0, ErrNoSlot
}

// Parsing of `ip -j` output.

type ipAddrJSON struct {
	IfName   string `json:"ifname"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		Address   string `json:"address"` // the peer of a point-to-point address
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

type ipRouteJSON struct {
	Dst string `json:"dst"`
}

// usedPrefixes lists the IPv4 prefixes that `ip -j addr` and `ip -j route`
// output show in use: every address (and point-to-point peer) as a /32 and
// every route destination except the default route.
func usedPrefixes(addrJSON, routeJSON []byte) ([]netip.Prefix, error) {
	var out []netip.Prefix
	if len(strings.TrimSpace(string(addrJSON))) > 0 {
		var links []ipAddrJSON
		if err := json.Unmarshal(addrJSON, &links); err != nil {
			return nil, fmt.Errorf("cluster: parsing ip addr output: %w", err)
		}
		for _, l := range links {
			for _, a := range l.AddrInfo {
				for _, s := range []string{a.Local, a.Address} {
					if ip, err := netip.ParseAddr(s); err == nil && ip.Is4() {
						out = append(out, netip.PrefixFrom(ip, 32))
					}
				}
			}
		}
	}
	if len(strings.TrimSpace(string(routeJSON))) > 0 {
		var routes []ipRouteJSON
		if err := json.Unmarshal(routeJSON, &routes); err != nil {
			return nil, fmt.Errorf("cluster: parsing ip route output: %w", err)
		}
		for _, r := range routes {
			if p, ok := parseRouteDst(r.Dst); ok {
				out = append(out, p)
			}
		}
	}
	return out, nil
}

func parseRouteDst(s string) (netip.Prefix, bool) {
	if s == "" || s == "default" {
		return netip.Prefix{}, false
	}
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
		return p.Masked(), true
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return netip.PrefixFrom(a, 32), true
	}
	return netip.Prefix{}, false
}

// Leftovers of crashed runs.

// procStart reads a process's start time (field 22 of /proc/PID/stat) under
// procRoot (normally /proc).
func procStart(procRoot string, pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return parseStatStart(string(b))
}

// parseStatStart extracts the start time from the text of /proc/PID/stat.
// The command name (field 2) is in parentheses and may contain spaces, so
// fields are counted after its closing parenthesis.
func parseStatStart(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("cluster: malformed /proc stat")
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 {
		return 0, errors.New("cluster: short /proc stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// selfOwner identifies the running process.
func selfOwner() (owner, error) {
	pid := os.Getpid()
	st, err := procStart("/proc", pid)
	if err != nil {
		return owner{}, fmt.Errorf("cluster: own start time: %w", err)
	}
	return owner{PID: pid, Start: st}, nil
}

// ownerAlive reports whether process o still runs: its pid exists and
// started at the same time.
func ownerAlive(procRoot string, o owner) bool {
	st, err := procStart(procRoot, o.PID)
	return err == nil && st == o.Start
}

// staleNamespaces picks, from namespace names, those made by nsName whose
// owner is not alive. Names of other tools are never picked.
func staleNamespaces(names []string, alive func(owner) bool) []string {
	var out []string
	for _, n := range names {
		o, _, _, ok := parseNSName(n)
		if ok && !alive(o) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// parseNetnsList extracts the names from `ip netns list` output, whose
// lines are "NAME" or "NAME (id: N)".
func parseNetnsList(out string) []string {
	var names []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}
