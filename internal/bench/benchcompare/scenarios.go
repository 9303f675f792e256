package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/meshkv/meshkv/internal/bench"
)

// Parameters of the comparison's workloads.
const (
	manyClients   = 256 // throughput runs of put and get
	someClients   = 64  // lock, lease, txn, mixed
	conns         = 16  // gRPC connections shared by the clients
	lockNames     = 8
	watchers      = 100
	watchRate     = 200 // writes per second in the watch run (× watchers events)
	rssLoadConns  = 8
	rssLoadClient = 64
)

// metrics are the report's rows.
type metrics struct {
	putRate, putCPU, putP50, getLRate, getSRate, getSCPU *metric
	lockRate, watchP50, watchP99, leaseRate, txnRate     *metric
	mixedRate, rssIdle, rssLoaded, loadRate              *metric

	lineP50                                          map[string]*metric // by target: direct, line-far, line-mid
	scrapeRate, scrapeCPU                            map[string]*metric // by target: no-scrape, scrape-1s
	emb                                              []*metric
	embPut, embPutP50, embGetL, embGetS, embWatchP99 *metric
}

func newMetrics(o *options) *metrics {
	m := &metrics{
		putRate:   &metric{name: fmt.Sprintf("put throughput (%d clients, %d conns), ops/s", manyClients, conns), unit: opsPerSec},
		putP50:    &metric{name: "put latency p50 (1 client)", unit: latency},
		getLRate:  &metric{name: fmt.Sprintf("linearizable get throughput (%d clients), ops/s", manyClients), unit: opsPerSec},
		getSRate:  &metric{name: fmt.Sprintf("serializable get throughput (%d clients), ops/s", manyClients), unit: opsPerSec},
		lockRate:  &metric{name: fmt.Sprintf("lock acquire+release (%d clients, %d names), ops/s", someClients, lockNames), unit: opsPerSec},
		watchP50:  &metric{name: fmt.Sprintf("watch event latency p50 (%d watchers, %d writes/s)", watchers, watchRate), unit: latency},
		watchP99:  &metric{name: fmt.Sprintf("watch event latency p99 (%d watchers, %d writes/s)", watchers, watchRate), unit: latency},
		leaseRate: &metric{name: fmt.Sprintf("lease grant+keepalive+revoke (%d clients), ops/s", someClients), unit: opsPerSec},
		txnRate:   &metric{name: fmt.Sprintf("txn CAS on mod revision (%d clients), ops/s", someClients), unit: opsPerSec},
		mixedRate: &metric{name: fmt.Sprintf("mixed 70%% get / 20%% put / 10%% txn (%d clients), ops/s", someClients), unit: opsPerSec},
		putCPU:    &metric{name: "server CPU per 1000 puts (3 servers, 256-client run), ms", unit: cpuPerOps},
		getSCPU:   &metric{name: "server CPU per 1000 serializable gets (3 servers), ms", unit: cpuPerOps},
		rssIdle:   &metric{name: "RSS of 3 fresh servers, idle", unit: memoryBytes},
		rssLoaded: &metric{name: fmt.Sprintf("RSS of 3 servers after loading %d keys of %d B", o.rssKeys, o.valueSize), unit: memoryBytes},
		loadRate:  &metric{name: fmt.Sprintf("loading those keys (%d clients), ops/s", rssLoadClient), unit: opsPerSec},
		lineP50: map[string]*metric{
			"direct":   {name: "full mesh, client at a follower", unit: latency},
			"line-far": {name: "line A–B–C, client at A, leader C (relayed through B)", unit: latency},
			"line-mid": {name: "line A–B–C, client at A, leader B (the middle)", unit: latency},
		},
		embPut:      &metric{name: fmt.Sprintf("put throughput (%d clients), ops/s", manyClients), unit: opsPerSec},
		embPutP50:   &metric{name: "put latency p50 (1 client)", unit: latency},
		embGetL:     &metric{name: fmt.Sprintf("linearizable get throughput (%d clients), ops/s", manyClients), unit: opsPerSec},
		embGetS:     &metric{name: fmt.Sprintf("serializable get throughput (%d clients), ops/s", manyClients), unit: opsPerSec},
		embWatchP99: &metric{name: fmt.Sprintf("watch event latency p99 (%d watchers, %d writes/s)", watchers, watchRate), unit: latency},
	}
	m.emb = []*metric{m.embPut, m.embPutP50, m.embGetL, m.embGetS, m.embWatchP99}
	m.scrapeRate = map[string]*metric{
		"no-scrape": {name: fmt.Sprintf("put throughput (%d clients, %d conns), no scraping, ops/s", manyClients, conns), unit: opsPerSec},
		"scrape-1s": {name: fmt.Sprintf("put throughput (%d clients, %d conns), all 3 nodes' /metrics scraped every 1s, ops/s", manyClients, conns), unit: opsPerSec},
	}
	m.scrapeCPU = map[string]*metric{
		"no-scrape": {name: "server CPU per 1000 puts, no scraping, ms", unit: cpuPerOps},
		"scrape-1s": {name: "server CPU per 1000 puts, scraped every 1s, ms", unit: cpuPerOps},
	}
	return m
}

// table returns the rows of the main comparison, in report order.
func (m *metrics) table() []*metric {
	return []*metric{
		m.putRate, m.putP50, m.getLRate, m.getSRate, m.lockRate, m.watchP50, m.watchP99,
		m.leaseRate, m.txnRate, m.mixedRate, m.putCPU, m.getSCPU, m.rssIdle, m.rssLoaded, m.loadRate,
	}
}

func rate(m *metric) func(*target, *bench.Result) {
	return func(t *target, r *bench.Result) { m.add(t.name, r.OpsPerSec) }
}

func p50(m *metric) func(*target, *bench.Result) {
	return func(t *target, r *bench.Result) { m.add(t.name, float64(r.Latency.P50)) }
}

// cpu adds the servers' CPU per 1000 operations.
func cpu(m *metric) func(*target, *bench.Result) {
	return func(t *target, r *bench.Result) {
		if r.CPU != nil && r.Ops > 0 {
			m.add(t.name, r.CPU.MsPer1000Ops)
		}
	}
}

func both(fs ...func(*target, *bench.Result)) func(*target, *bench.Result) {
	return func(t *target, r *bench.Result) {
		for _, f := range fs {
			f(t, r)
		}
	}
}

// scenarios returns the workloads of the main table, the line topology and
// the embedded node.
func (c *comparer) scenarios(m *metrics) (table, line, embedded []scenario) {
	putMany := bench.Config{Workload: bench.Put, Clients: manyClients}
	putOne := bench.Config{Workload: bench.Put, Clients: 1}
	getL := bench.Config{Workload: bench.Get, Clients: manyClients}
	getS := bench.Config{Workload: bench.Get, Clients: manyClients, Serializable: true}
	watch := bench.Config{Workload: bench.Watch, Clients: 1, Watchers: watchers, Rate: watchRate}
	table = []scenario{
		{name: "put-256", cfg: putMany, conns: conns, take: both(rate(m.putRate), cpu(m.putCPU))},
		{name: "put-1", cfg: putOne, conns: 1, take: p50(m.putP50)},
		{name: "get-l", cfg: getL, conns: conns, take: rate(m.getLRate)},
		{name: "get-s", cfg: getS, conns: conns, take: both(rate(m.getSRate), cpu(m.getSCPU))},
		{name: "lock", cfg: bench.Config{Workload: bench.Lock, Clients: someClients, Locks: lockNames}, conns: conns, take: rate(m.lockRate)},
		{name: "watch", cfg: watch, conns: conns, take: func(t *target, r *bench.Result) {
			m.watchP50.add(t.name, float64(r.Latency.P50))
			m.watchP99.add(t.name, float64(r.Latency.P99))
		}},
		{name: "lease", cfg: bench.Config{Workload: bench.Lease, Clients: someClients}, conns: conns, take: rate(m.leaseRate)},
		{name: "txn", cfg: bench.Config{Workload: bench.Txn, Clients: someClients}, conns: conns, take: rate(m.txnRate)},
		{name: "mixed", cfg: bench.Config{Workload: bench.Mixed, Clients: someClients}, conns: conns, take: rate(m.mixedRate)},
	}
	line = []scenario{{name: "put-1", cfg: putOne, conns: 1, take: func(t *target, r *bench.Result) {
		m.lineP50[t.name].add("meshkv", float64(r.Latency.P50))
	}}}
	embedded = []scenario{
		{name: "put-256", cfg: putMany, take: rate(m.embPut)},
		{name: "put-1", cfg: putOne, take: p50(m.embPutP50)},
		{name: "get-l", cfg: getL, take: rate(m.embGetL)},
		{name: "get-s", cfg: getS, take: rate(m.embGetS)},
		{name: "watch", cfg: watch, take: func(t *target, r *bench.Result) { m.embWatchP99.add(t.name, float64(r.Latency.P99)) }},
	}
	return table, line, embedded
}

// scrapeScenarios is the put workload whose throughput the scrape section
// compares with and without scraping.
func (c *comparer) scrapeScenarios(m *metrics) []scenario {
	return []scenario{{name: "put-256", cfg: bench.Config{Workload: bench.Put, Clients: manyClients}, conns: conns,
		take: func(t *target, r *bench.Result) {
			m.scrapeRate[t.name].add("meshkv", r.OpsPerSec)
			if r.CPU != nil && r.Ops > 0 {
				m.scrapeCPU[t.name].add("meshkv", r.CPU.MsPer1000Ops)
			}
			if s := r.Scrapes; s != nil && (s.Failed > 0 || s.Count == 0) {
				c.note("scrape run: %d scrapes, %d failed", s.Count, s.Failed)
			}
		}}}
}

// writeHeader writes the title, the machine and the method.
func writeHeader(b *strings.Builder, o *options, etcdBin, meshkvBin string) {
	fmt.Fprintf(b, "# meshkv vs etcd: side by side on one machine\n\n")
	fmt.Fprintf(b, "- date: %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(b, "- machine: %d CPUs (nproc), %s, %s RAM, Linux %s, load average at start %s\n",
		runtime.NumCPU(), cpuModel(), memTotal(), firstLine(readFile("/proc/sys/kernel/osrelease")),
		loadAvg())
	fmt.Fprintf(b, "- servers: %s with `--unsafe-no-fsync` (3 members); %s (3 nodes over mesh); both on loopback, clients in one process (clientv3, %s)\n",
		versionLine(etcdBin), versionLine(meshkvBin), runtime.Version())
	fmt.Fprintf(b, "- method: each workload runs on etcd, then meshkv, %d rounds (interleaved); each run: %s warmup then %s measured; "+
		"the cells are the median of the rounds (min–max); values of %d B; the history is compacted after every run; "+
		"ratios are meshkv/etcd (higher is better for ops/s, lower for latency, CPU and RSS)\n\n",
		o.rounds, bench.FormatDuration(o.warmup), bench.FormatDuration(o.duration), o.valueSize)
}

// writeBody writes the tables and notes.
func writeBody(b *strings.Builder, o *options, m *metrics, notes []string) {
	if o.sections[sectionTable] || o.sections[sectionRSS] {
		b.WriteString("## 3-node meshkv vs 3-member etcd\n\n")
		var rows []*metric
		for _, r := range m.table() {
			if len(r.values) > 0 {
				rows = append(rows, r)
			}
		}
		writeComparison(b, rows, "meshkv", "etcd")
		b.WriteString("\n")
	}
	if o.sections[sectionLine] {
		b.WriteString("## meshkv put latency p50 (1 client) on a relayed line topology\n\n")
		writeList(b, "topology (peer discovery off on the line)", []*metric{m.lineP50["direct"], m.lineP50["line-far"], m.lineP50["line-mid"]}, "meshkv", true)
		b.WriteString("\n")
	}
	if o.sections[sectionScrape] {
		b.WriteString("## cost of scraping /metrics every second (3-node meshkv)\n\n")
		writeList(b, "workload", []*metric{m.scrapeRate["no-scrape"], m.scrapeRate["scrape-1s"]}, "meshkv", true)
		b.WriteString("\n")
		writeList(b, "CPU", []*metric{m.scrapeCPU["no-scrape"], m.scrapeCPU["scrape-1s"]}, "meshkv", true)
		b.WriteString("\n")
	}
	if o.sections[sectionEmbedded] {
		b.WriteString("## embedded single node, in-process client (reference: no replication, no TCP)\n\n")
		writeList(b, "workload", m.emb, "embedded", false)
		b.WriteString("\n")
	}
	if len(notes) > 0 {
		b.WriteString("## notes\n\n")
		for _, n := range notes {
			fmt.Fprintf(b, "- %s\n", n)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(b, "load average at end: %s\n", loadAvg())
}

func readFile(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return string(b)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return strings.TrimSpace(s)
}

// cpuModel returns the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	for _, l := range strings.Split(readFile("/proc/cpuinfo"), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU model"
}

// memTotal returns MemTotal of /proc/meminfo, formatted.
func memTotal() string {
	for _, l := range strings.Split(readFile("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
				return bench.FormatBytes(kb * 1024)
			}
		}
	}
	return "unknown"
}

func loadAvg() string {
	f := strings.Fields(readFile("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// versionLine returns the first line of `bin --version`.
func versionLine(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return bin + " (version unknown)"
	}
	return firstLine(string(out))
}
