package cluster

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestNSNameRoundTrip(t *testing.T) {
	o := owner{PID: 4194304, Start: 18446744073709551615}
	for _, member := range []string{"n1", "n15", "probe", "n-1"} {
		name := nsName(o, 46655, member)
		got, run, m, ok := parseNSName(name)
		if !ok || got != o || run != 46655 || m != member {
			t.Errorf("parseNSName(%q) = %+v %d %q %v", name, got, run, m, ok)
		}
	}
	for _, bad := range []string{"", "mkc-", "mkc-1-2-n1", "mkc-x.1-2-n1", "mkc-1.y-2-n1", "mkc-1.2-z-n1", "mkc-1.2-3-",
		"mkc-0.2-3-n1", "other-1.2-3-n1", "mkc-1.2--1-n1"} {
		if _, _, _, ok := parseNSName(bad); ok {
			t.Errorf("parseNSName(%q) accepted", bad)
		}
	}
}

func TestHostVethNameFits(t *testing.T) {
	seen := map[string]bool{}
	for _, pid := range []int{1, 32768, 4194304} {
		for _, run := range []int{0, 46655} {
			for _, k := range []int{1, MaxMembers} {
				n, err := hostVethName(owner{PID: pid}, run, k)
				if err != nil {
					t.Fatalf("hostVethName(%d, %d, %d): %v", pid, run, k, err)
				}
				if len(n) > 15 || seen[n] {
					t.Errorf("hostVethName(%d, %d, %d) = %q: too long or not unique", pid, run, k, n)
				}
				seen[n] = true
			}
		}
	}
	if _, err := hostVethName(owner{PID: 1 << 40}, 1<<30, 99); err == nil {
		t.Error("an over-long name was accepted")
	}
}

func TestAddressPlan(t *testing.T) {
	for k := 1; k <= MaxMembers; k++ {
		node, client, host := nodeAddr(7, k), clientAddr(7, k), hostAddr(7, k)
		for _, a := range []netip.Addr{node, client, host} {
			if !slotPrefix(7).Contains(a) {
				t.Fatalf("member %d address %v outside slot 7", k, a)
			}
		}
		if node == client || client == host || node == host {
			t.Fatalf("member %d addresses collide: %v %v %v", k, node, client, host)
		}
		if k > 1 && (node == nodeAddr(7, k-1) || client == hostAddr(7, k-1)) {
			t.Fatalf("members %d and %d share an address", k-1, k)
		}
	}
	if got := clientAddr(3, 2).String(); got != "10.201.3.66" {
		t.Errorf("clientAddr(3, 2) = %s", got)
	}
}

func TestFreeSlot(t *testing.T) {
	p := netip.MustParsePrefix
	tests := []struct {
		used []netip.Prefix
		want int
	}{
		{nil, 0},
		{[]netip.Prefix{p("127.0.0.1/32"), p("10.0.0.0/8")}, -1},
		{[]netip.Prefix{p("10.201.0.129/32"), p("10.201.1.65/32")}, 2},
		{[]netip.Prefix{p("10.201.0.0/23")}, 2},
		{[]netip.Prefix{p("192.168.1.0/24")}, 0},
	}
	for _, tc := range tests {
		got, err := freeSlot(tc.used)
		if tc.want < 0 {
			if err == nil {
				t.Errorf("freeSlot(%v) = %d, want ErrNoSlot", tc.used, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("freeSlot(%v) = %d, %v; want %d", tc.used, got, err, tc.want)
		}
	}
}

func TestUsedPrefixes(t *testing.T) {
	addrs := `[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
	{"ifindex":9,"ifname":"mk1-2-1","addr_info":[{"family":"inet","local":"10.201.4.129","address":"10.201.4.65","prefixlen":32}]}]`
	routes := `[{"dst":"default","gateway":"10.0.0.1"},{"dst":"10.201.4.65","dev":"mk1-2-1"},{"dst":"172.16.0.0/12"},{"dst":"fe80::/64"}]`
	got, err := usedPrefixes([]byte(addrs), []byte(routes))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"127.0.0.1/32", "10.201.4.129/32", "10.201.4.65/32", "10.201.4.65/32", "172.16.0.0/12"}
	var gs []string
	for _, p := range got {
		gs = append(gs, p.String())
	}
	if !slices.Equal(gs, want) {
		t.Errorf("usedPrefixes = %v, want %v", gs, want)
	}
	if s, _ := freeSlot(got); s != 0 {
		t.Errorf("slot %d, want 0 (slot 4 is taken, 0 is free)", s)
	}
	if _, err := usedPrefixes([]byte("{"), nil); err == nil {
		t.Error("bad JSON accepted")
	}
	if got, err := usedPrefixes(nil, []byte(" ")); err != nil || len(got) != 0 {
		t.Errorf("empty output: %v, %v", got, err)
	}
}

func TestParseStat(t *testing.T) {
	stat := "1234 (meshkv (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 30 0 0 20 0 12 0 987654 1000 200"
	if got, err := parseStatStart(stat); err != nil || got != 987654 {
		t.Errorf("parseStatStart = %d, %v; want 987654", got, err)
	}
	if got, err := parseStatCPU(stat); err != nil || got != 280*clockTick {
		t.Errorf("parseStatCPU = %v, %v; want %v", got, err, 280*clockTick)
	}
	for _, bad := range []string{"", "1 (x", "1 (x) S 1 2"} {
		if _, err := parseStatStart(bad); err == nil {
			t.Errorf("parseStatStart(%q) accepted", bad)
		}
		if _, err := parseStatCPU(bad); err == nil {
			t.Errorf("parseStatCPU(%q) accepted", bad)
		}
	}
}

// fakeProc writes /proc/PID/stat files with the given start times.
func fakeProc(t *testing.T, starts map[int]uint64) string {
	t.Helper()
	root := t.TempDir()
	for pid, st := range starts {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := strconv.Itoa(pid) + " (chaos) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " + strconv.FormatUint(st, 10) + " 0 0"
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestStaleNamespaces(t *testing.T) {
	proc := fakeProc(t, map[int]uint64{100: 5000, 200: 7000})
	alive := func(o owner) bool { return ownerAlive(proc, o) }
	names := []string{
		nsName(owner{PID: 100, Start: 5000}, 1, "n1"), // owner alive
		nsName(owner{PID: 200, Start: 6999}, 1, "n1"), // pid reused by another process
		nsName(owner{PID: 300, Start: 1}, 4, "n2"),    // owner gone
		nsName(owner{PID: 300, Start: 1}, 4, "n1"),
		"mkc-garbage",         // not ours
		"someone-elses-netns", // not ours
	}
	got := staleNamespaces(names, alive)
	want := []string{names[1], names[3], names[2]}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("staleNamespaces = %q, want %q", got, want)
	}
	if got := parseNetnsList("mkc-1.2-3-n1 (id: 4)\nother\n\n  mkc-1.2-3-n2\n"); !slices.Equal(got, []string{"mkc-1.2-3-n1", "other", "mkc-1.2-3-n2"}) {
		t.Errorf("parseNetnsList = %q", got)
	}
	self, err := selfOwner()
	if err != nil {
		t.Fatal(err)
	}
	if !ownerAlive("/proc", self) {
		t.Error("this process is not alive according to ownerAlive")
	}
}

func TestParseProcCgroup(t *testing.T) {
	v1 := "9:name=systemd:/\n4:memory:/x\n1:cpu,cpuacct:/user.slice\n0::/\n"
	if got, err := parseProcCgroup(v1, false); err != nil || got != "/user.slice" {
		t.Errorf("v1: %q, %v", got, err)
	}
	if got, err := parseProcCgroup("0::/system.slice/a.service\n", true); err != nil || got != "/system.slice/a.service" {
		t.Errorf("v2: %q, %v", got, err)
	}
	if _, err := parseProcCgroup("4:memory:/x\n", false); err == nil {
		t.Error("no cpu controller accepted")
	}
}

func TestBlockState(t *testing.T) {
	b := blockState{}
	b.cut("a", "b")
	b.oneWay("c", "a")
	if got := b.list(); !slices.Equal(got, [][2]string{{"a", "b"}, {"b", "a"}, {"c", "a"}}) {
		t.Errorf("after cut and one-way: %v", got)
	}
	b.oneWay("b", "a") // replaces the two-way cut
	if got := b.list(); !slices.Equal(got, [][2]string{{"b", "a"}, {"c", "a"}}) {
		t.Errorf("after one-way replacing a cut: %v", got)
	}
	b.heal("a", "c")
	b.heal("a", "b")
	if got := b.list(); len(got) != 0 {
		t.Errorf("after heals: %v", got)
	}
}

func TestMemberArgs(t *testing.T) {
	cfg := Config{Binary: "x", Nodes: 5, TargetVoters: 5, Net: Netns, Flavor: Etcd}.withDefaults()
	names := []string{"n1", "n2"}
	initial, err := initialCluster(names, []string{"10.201.0.1:2380", "10.201.0.2:2380"})
	if err != nil || initial != "n1=http://10.201.0.1:2380,n2=http://10.201.0.2:2380" {
		t.Fatalf("initialCluster = %q, %v", initial, err)
	}
	if _, err := initialCluster(names, nil); err == nil {
		t.Error("mismatched initial cluster accepted")
	}
	m := memberSpec{name: "n2", clientURL: "http://10.201.0.66:2379", peerAddr: "10.201.0.2:2380", initial: initial, dataDir: "/d/n2.etcd"}
	got := flagMap(etcdArgs(cfg, m, "tok"))
	for k, v := range map[string]string{
		"--listen-peer-urls": "http://10.201.0.2:2380", "--initial-advertise-peer-urls": "http://10.201.0.2:2380",
		"--listen-client-urls": "http://10.201.0.66:2379", "--initial-cluster": initial, "--heartbeat-interval": "100",
		"--election-timeout": "1000", "--initial-cluster-token": "tok", "--unsafe-no-fsync": "", "--data-dir": "/d/n2.etcd",
	} {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("etcd %s = %q (present %v), want %q", k, gv, ok, v)
		}
	}
	cfg.Flavor = Meshkv
	m.peers = []string{"10.201.0.1:2380", "10.201.0.3:2380"}
	got = flagMap(meshkvArgs(cfg, m, "/tmp/pw"))
	for k, v := range map[string]string{
		"--mesh-listen": "10.201.0.2:2380", "--peers": "10.201.0.1:2380,10.201.0.3:2380", "--mesh-password-file": "/tmp/pw",
		"--target-voters": "5", "--initial-cluster-size": "5", "--election-timeout": "1000", "--peer-discovery=false": "",
	} {
		if gv, ok := got[k]; !ok || gv != v {
			t.Errorf("meshkv %s = %q (present %v), want %q", k, gv, ok, v)
		}
	}
}

// flagMap reads "--flag value" and "--flag" (followed by another flag) into
// a map.
func flagMap(args []string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(args); i++ {
		if i+1 < len(args) && len(args[i+1]) > 0 && args[i+1][0] != '-' {
			out[args[i]] = args[i+1]
			i++
			continue
		}
		out[args[i]] = ""
	}
	return out
}

func TestConfigModes(t *testing.T) {
	bin := sleepBinary(t)
	if err := (Config{Binary: bin, Flavor: Etcd}).Validate(); err == nil {
		t.Error("etcd in proxy mode accepted")
	}
	if err := (Config{Binary: bin, Flavor: Etcd, Net: Netns}).Validate(); err != nil {
		t.Errorf("etcd in netns mode: %v", err)
	}
	for _, c := range []Config{{Binary: bin, Net: 9}, {Binary: bin, Flavor: 9}, {Binary: bin, Starve: 9}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	d := Config{Binary: bin, Net: Netns}.withDefaults()
	if d.Heartbeat != NetnsHeartbeat || d.ElectionTimeout != NetnsElectionTimeout || d.Starve != StarveQuota {
		t.Errorf("netns defaults: %+v", d)
	}
	d = Config{Binary: bin}.withDefaults()
	if d.Heartbeat != DefaultHeartbeat || d.ElectionTimeout != DefaultElectionTimeout || d.Net != Proxy || d.Flavor != Meshkv {
		t.Errorf("proxy defaults: %+v", d)
	}
	for _, s := range []string{"proxy", "netns"} {
		if n, err := ParseNet(s); err != nil || n.String() != s {
			t.Errorf("ParseNet(%q) = %v, %v", s, n, err)
		}
	}
	for _, s := range []string{"meshkv", "etcd"} {
		if f, err := ParseFlavor(s); err != nil || f.String() != s {
			t.Errorf("ParseFlavor(%q) = %v, %v", s, f, err)
		}
	}
	for _, s := range []string{"pin", "quota"} {
		if m, err := ParseStarveMethod(s); err != nil || m.String() != s {
			t.Errorf("ParseStarveMethod(%q) = %v, %v", s, m, err)
		}
	}
	for _, bad := range []func() error{
		func() error { _, err := ParseNet("tc"); return err },
		func() error { _, err := ParseFlavor("consul"); return err },
		func() error { _, err := ParseStarveMethod("nice"); return err },
	} {
		if bad() == nil {
			t.Error("a bad name was parsed")
		}
	}
}
