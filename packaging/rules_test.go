package packaging

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/basefs/basefs/agent/agenttest"
)

// The alert rules are valid, and each fires on what it is about and not on a healthy host
// (basefs.rules.test.yml).
func TestAlertRules(t *testing.T) {
	promtool := tool(t, "promtool")
	dir := filepath.Join(repoRoot(t), "packaging")
	run(t, dir, promtool, "check", "rules", "basefs.rules.yml")
	out := run(t, dir, promtool, "test", "rules", "basefs.rules.test.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules:\n%s", out)
	}
}

// A real Prometheus scrapes a real daemon: every metric name the alert rules use is one the
// daemon exports (a renamed metric would leave its alert silent forever).
func TestPrometheusScrapesEveryRuleMetric(t *testing.T) {
	prom := tool(t, "prometheus")
	mport, pport := freePort(t), freePort(t)
	// Glance configured but unreachable (a closed loopback port): basefs_glance_up is 0.
	e := agenttest.NewWith(t, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", mport), "--glance-endpoint", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	img := e.Import(7, 2<<20, 0)
	if _, err := os.ReadFile(filepath.Join(e.Mount, img.Digest)); err != nil { // a read: the read latency histogram
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%s]\nscrape_configs:\n  - job_name: basefs\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n",
		filepath.Join(repoRoot(t), "packaging", "basefs.rules.yml"), mport)), 0o644)
	cmd := exec.Command(prom, "--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", pport), "--log.level=warn")
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	api := fmt.Sprintf("http://127.0.0.1:%d/api/v1/", pport)
	get := func(path string, v any) error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", api+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return json.Unmarshal(b, v)
	}
	want := ruleMetrics(t)
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "basefs.rules.yml"))
	if err != nil {
		t.Fatal(err)
	}
	alerts := strings.Count(string(src), "- alert: ")
	var names struct{ Data []string }
	t0 := time.Now()
	for {
		names.Data = nil
		err := get("label/__name__/values", &names)
		var missing []string
		for _, n := range want {
			if !slices.Contains(names.Data, n) {
				missing = append(missing, n)
			}
		}
		if err == nil && len(missing) == 0 {
			break
		}
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("after 60 s Prometheus has not scraped %v from the daemon (err %v); it has %v\nprometheus log:\n%s", missing, err, names.Data, log)
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The rules loaded into this Prometheus evaluate without error.
	var rules struct {
		Data struct {
			Groups []struct {
				Rules []struct{ Name, Health, LastError string }
			}
		}
	}
	for {
		if err := get("rules", &rules); err != nil {
			t.Fatal(err)
		}
		ok, n := true, 0
		for _, g := range rules.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health != "ok" {
					ok = false
					if r.Health == "err" {
						t.Fatalf("rule %s: %s", r.Name, r.LastError)
					}
				}
			}
		}
		if ok && n == alerts {
			break
		}
		if time.Since(t0) > 60*time.Second {
			t.Fatalf("rules not all evaluated: %+v", rules.Data)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("Prometheus scraped all %d metrics the rules use in %.1fs: %v", len(want), time.Since(t0).Seconds(), want)
}
