//go:build !race

// Real mesh routers: see mesh_test.go for why these tests skip -race.

package meshkv_test

import (
	"fmt"
	"io"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshkv/meshkv"
	"github.com/meshkv/meshkv/internal/netproxy"
)

// scrapeNode returns a node's metrics page.
func scrapeNode(t *testing.T, n *meshkv.Node) string {
	t.Helper()
	rec := httptest.NewRecorder()
	n.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// metricValue returns the value of the series whose line starts with
// prefix (name and labels), and whether there is one.
func metricValue(page, prefix string) (float64, bool) {
	for _, l := range strings.Split(page, "\n") {
		if rest, ok := strings.CutPrefix(l, prefix); ok && strings.HasPrefix(rest, " ") {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil
		}
	}
	return 0, false
}

// TestMeshPeerMetrics checks the per-peer metrics of a three-node cluster:
// direct paths and probe round trips at first, then a relayed path and a
// path switch once one link is cut silently.
func TestMeshPeerMetrics(t *testing.T) {
	tc := startCluster(t, 3, 3, fullMesh, nil)
	hex := func(i int) string { return strconv.FormatUint(tc.nodes[i].ID(), 16) }
	waitFor(t, 20*time.Second, "direct paths and round trips to both peers", func() bool {
		page := scrapeNode(t, tc.nodes[0])
		for _, i := range []int{1, 2} {
			if v, ok := metricValue(page, fmt.Sprintf(`etcd_network_peer_round_trip_time_seconds_count{To="%s"}`, hex(i))); !ok || v == 0 {
				return false
			}
			if !regexp.MustCompile(`meshkv_peer_path\{member="` + hex(i) + `",path="direct",peer="[^"]+"\} 1`).MatchString(page) {
				return false
			}
			if v, ok := metricValue(page, fmt.Sprintf(`etcd_network_active_peers{Local="%s",Remote="%s"}`, hex(0), hex(i))); !ok || v != 1 {
				return false
			}
		}
		return true
	})
	page := scrapeNode(t, tc.nodes[0])
	if v, ok := metricValue(page, `meshkv_mesh_peers{path="direct"}`); !ok || v != 2 {
		t.Fatalf("meshkv_mesh_peers{path=\"direct\"} = %v (%v), want 2", v, ok)
	}
	if v, ok := metricValue(page, "meshkv_mesh_messages_sent_total"); !ok || v == 0 {
		t.Fatalf("meshkv_mesh_messages_sent_total = %v (%v), want raft traffic", v, ok)
	}

	tc.cut(0, 2, netproxy.Blackhole)
	waitFor(t, 30*time.Second, "node 0 reaches node 2 through a relay", func() bool {
		page := scrapeNode(t, tc.nodes[0])
		return regexp.MustCompile(`meshkv_peer_path\{member="`+hex(2)+`",path="relayed",peer="[^"]+"\} 1`).MatchString(page) &&
			regexp.MustCompile(`meshkv_peer_path_switches_total\{member="`+hex(2)+`",peer="[^"]+"\} [1-9]`).MatchString(page)
	})
	if err := put(tc.nodes[0].Client(), "after-cut", "x", 5*time.Second); err != nil {
		t.Fatalf("write with the link cut: %v", err)
	}
}
