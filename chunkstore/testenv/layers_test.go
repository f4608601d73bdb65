package testenv

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
)

// The dependency direction of ../shared/ARCHITECTURE.md, enforced: cmd → daemon/agent/bench →
// fs → cache → chunkstore (the daemon above fs, cache and cache/glanceimg; the agent and bench
// talk to it through its control API), leaf packages below whoever uses them (fs/names,
// daemon/control, cache/report), the daemon without libvirt. No exceptions.

const module = "github.com/basefs/basefs"

// rule forbids packages matching from to depend (directly, or transitively when deep) on
// packages matching any of to, except those matching allow.
type rule struct {
	from  string
	deep  bool
	to    []string
	allow []string
	why   string
}

// heavy are the clients a leaf package must never pull in.
var heavy = []string{"libvirt.org/...", "github.com/hanwen/go-fuse/...", "github.com/gophercloud/...",
	"github.com/minio/...", "github.com/prometheus/..."}

var rules = []rule{
	{from: "chunkstore/...", deep: true, to: []string{"cache/...", "fs/...", "agent/...", "daemon/...", "cmd/...", "bench/..."},
		why: "chunkstore is the bottom layer"},
	{from: "cache/...", deep: true, to: []string{"fs/...", "agent/...", "daemon/...", "cmd/...", "bench/..."},
		why: "cache is below fs, the agent and the daemon"},
	{from: "fs/...", deep: true, to: []string{"agent/...", "daemon/...", "cmd/...", "bench/...", "libvirt.org/..."},
		why: "fs knows nothing of instances, the daemon or libvirt"},
	{from: "agent/...", deep: true, to: []string{"fs/...", "daemon", "cmd/...", "bench/...", "github.com/hanwen/go-fuse/..."},
		allow: []string{"fs/names"}, why: "the agent sees images as paths and the daemon as its control API, never FUSE internals"},
	{from: "daemon/...", deep: true, to: []string{"agent", "cmd/...", "bench/...", "libvirt.org/..."},
		why: "the daemon is above cache and fs, below the binary, without libvirt"},
	{from: "daemon/control", deep: true, to: append([]string{"cache/...", "fs/...", "daemon", "agent/..."}, heavy...),
		allow: []string{"cache/report"}, why: "leaf: the control API's wire types and client, for every part (chunkstore, cache/report and the standard library)"},
	{from: "cache/report", deep: true, to: append([]string{"cache/...", "fs/...", "daemon/...", "agent/..."}, heavy...),
		why: "leaf: the cache's reports as values (chunkstore and the standard library)"},
	{from: "bench/...", deep: true, to: []string{"daemon"},
		why: "the benchmarks drive a daemon through its binary and its control API"},
	{from: "fs/names", deep: true, to: append([]string{"cache/...", "fs", "agent/..."}, heavy...),
		why: "leaf vocabulary: chunkstore and the standard library only"},
	{from: "agent/nova", deep: true, to: append([]string{"cache/...", "fs", "agent"}, heavy...),
		why: "nova's conventions without libvirt"},
	{from: "cache", deep: true, to: []string{"cache/glanceimg", "chunkstore/glance", "chunkstore/origin", "chunkstore/s3", "chunkstore/httpstore", "github.com/gophercloud/...", "github.com/minio/..."},
		why: "the read path knows nothing of Glance or of how origins are opened (the layer above and cmd do)"},
	{from: "fs/...", deep: true, to: []string{"cache/glanceimg", "chunkstore/glance", "chunkstore/s3", "github.com/gophercloud/...", "github.com/minio/..."},
		why: "fs does not link the S3 or Glance clients"},
	{from: "agent", deep: true, to: []string{"cache/glanceimg", "chunkstore/glance", "chunkstore/s3", "github.com/gophercloud/...", "github.com/minio/..."},
		why: "the agent does not link the S3 or Glance clients"},
	{from: "chunkstore/glance/glanceref", deep: true, to: heavy,
		why: "leaf vocabulary of Glance images, without a client"},
	{from: "cache/...", deep: true, to: []string{"chunkstore/peer", "github.com/hashicorp/memberlist"},
		why: "the read path does not know how peers are found (cmd wires the peer tier in as an origin)"},
	{from: "fs/...", deep: true, to: []string{"chunkstore/peer", "github.com/hashicorp/memberlist"},
		why: "fs does not link the peer tier"},
	{from: "cmd/basefs", deep: true, to: []string{"libvirt.org/...", "agent"},
		why: "the daemon does not link libvirt"},
	{from: "chunkstore/child", deep: true, to: append([]string{"..."}, heavy...),
		why: "process lifecycle is a leaf: fs (supervisor, relay), bench and the harness use it"},
	{from: "chunkstore/testenv/daemontest", deep: true, to: append([]string{"..."}, heavy...), allow: []string{"chunkstore/child"},
		why: "the daemon harness knows the daemon by its command line, NOTIFY_SOCKET and mount: cmd tests, agenttest and bench import it"},
	{from: "...", deep: false, to: []string{"cmd/..."}, why: "nothing imports a binary"},
	{from: "...", deep: false, to: []string{"bench/..."}, allow: []string{}, why: "only basefs-bench imports bench"},
}

// match reports whether package p (a full import path) matches pattern (relative to the
// module unless it contains a dot in its first element; "x/..." is x and below).
func match(pattern, p string) bool {
	full := pattern
	if first, _, _ := strings.Cut(pattern, "/"); !strings.Contains(first, ".") && pattern != "..." {
		full = module + "/" + pattern
	}
	if pattern == "..." {
		return strings.HasPrefix(p, module)
	}
	if base, ok := strings.CutSuffix(full, "/..."); ok {
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == full
}

// violations checks the import graph (package → its direct imports) against rules.
func violations(graph map[string][]string, rules []rule) []string {
	var out []string
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, r := range rules {
		for _, p := range pkgs {
			if !match(r.from, p) {
				continue
			}
			// The bench binary may import bench; a package may import itself's children.
			deps := graph[p]
			if r.deep {
				deps = closure(graph, p)
			}
			for _, d := range deps {
				if d == p || allowed(r, p, d) {
					continue
				}
				for _, to := range r.to {
					if match(to, d) {
						out = append(out, fmt.Sprintf("%s → %s (%s)", p, d, r.why))
					}
				}
			}
		}
	}
	return out
}

func allowed(r rule, from, to string) bool {
	for _, a := range r.allow {
		if match(a, to) {
			return true
		}
	}
	// A binary's own package and bench's runner: cmd/basefs-bench imports bench.
	if match("bench/...", to) && (match("bench/...", from) || from == module+"/cmd/basefs-bench") {
		return true
	}
	if match("cmd/...", to) && match("cmd/...", from) && strings.HasPrefix(to, from+"/") {
		return true
	}
	// What the binaries share on their command lines (cmd/internal/cli) is not a binary; Go's
	// internal rule keeps it to them.
	if match("cmd/internal/...", to) && match("cmd/...", from) {
		return true
	}
	return false
}

func closure(graph map[string][]string, p string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(q string) {
		for _, d := range graph[q] {
			if !seen[d] {
				seen[d] = true
				walk(d)
			}
		}
	}
	walk(p)
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// importGraph lists the module's packages (not their tests) with their direct imports.
func importGraph(t *testing.T) map[string][]string {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	cmd := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	g := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		g[f[0]] = f[1:]
	}
	return g
}

func TestLayers(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		Skip(t, "the go command is not on PATH")
	}
	for _, v := range violations(importGraph(t), rules) {
		t.Error("import against the layers:", v)
	}
}

// TestLayersCatchPlantedViolations: the checker finds what the rules forbid, directly and
// through another package, and lets the allowed leaf through.
func TestLayersCatchPlantedViolations(t *testing.T) {
	m := func(p string) string { return module + "/" + p }
	g := map[string][]string{
		m("chunkstore/local"): {m("chunkstore"), m("cache")},                                            // planted: a backend importing the cache
		m("chunkstore"):       {"fmt"},                                                                  //
		m("cache"):            {m("chunkstore")},                                                        //
		m("fs"):               {m("cache"), m("fs/names")},                                              //
		m("fs/names"):         {m("chunkstore")},                                                        //
		m("agent"):            {m("fs/names"), m("agent/x")},                                            // allowed leaf
		m("agent/x"):          {"github.com/hanwen/go-fuse/v2"},                                         // planted: FUSE under the agent, transitively
		m("cmd/basefs"):       {m("fs"), m("agent/nova"), m("cmd/internal/cli"), m("cmd/basefs-agent")}, // planted: a binary importing another
		m("agent/nova"):       {m("chunkstore"), m("fs/names")},                                         //
		m("bench"):            {m("cmd/internal/cli")},                                                  // planted: the binaries' helpers outside cmd
		m("cache/glanceimg"):  {m("cache"), m("fs/names")},                                              // planted: the arrow up that once was allowed
		m("agent/y"):          {m("daemon/control"), m("daemon")},                                       // allowed leaf, planted: the daemon itself
		m("daemon/control"):   {m("chunkstore"), m("cache/report")},                                     //
		m("cache/report"):     {m("chunkstore")},                                                        //
	}
	got := violations(g, rules)
	want := []string{
		m("chunkstore/local") + " → " + m("cache"),
		m("agent") + " → github.com/hanwen/go-fuse/v2",
		m("agent/x") + " → github.com/hanwen/go-fuse/v2",
		m("cmd/basefs") + " → " + m("cmd/basefs-agent"),
		m("bench") + " → " + m("cmd/internal/cli"),
		m("cache/glanceimg") + " → " + m("fs/names"),
		m("agent/y") + " → " + m("daemon"),
	}
	for _, w := range want {
		found := false
		for _, v := range got {
			if strings.HasPrefix(v, w+" ") {
				found = true
			}
		}
		if !found {
			t.Errorf("planted violation %q not found in %q", w, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("violations %q, want exactly %d", got, len(want))
	}
}
