package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
)

// The storm's Glance variant (--storm-from glance): the image is a raw image in a real Glance
// (scripts/start-glance.sh, no Keystone); `basefs publish glance://ID` imports it (reading it
// from Glance once, counted by a proxy of this process), records its manifest on the Glance
// image (basefs_manifest) and publishes it to a scratch layout, of which only the manifest is
// put in the tier. So each host's origins are peers, the tier (the manifest, no chunks) and
// Glance (chunks by range, verified against the manifest): what the storm takes from Glance is
// what "Glance serves each image once" is about.

// stormSource is where a storm's image comes from.
type stormSource struct {
	name      string // "tier" or "glance"
	tierDir   string // the static tier's root (the published layout, or the manifest alone)
	glanceURL string // Glance on loopback ("" for the tier source)
	file      string // the name each host reads in its mount: the digest, or nova's name
	// glance only: what publish read from Glance, and the image's size.
	publishRead, imageSize int64
	stop                   func()
}

// glanceSource starts Glance, uploads the raw image at raw, publishes it from Glance and makes
// a tier that holds its manifest alone.
func (e *env) glanceSource(ctx context.Context, raw string) (*stormSource, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	gdir, err := e.dir("storm", "glance")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	genv := append(os.Environ(), "BASEFS_GLANCE_DIR="+gdir, fmt.Sprintf("BASEFS_GLANCE_PORT=%d", port))
	start := exec.CommandContext(ctx, filepath.Join(root, "scripts", "start-glance.sh"))
	start.Env = genv
	out, err := start.Output()
	if err != nil {
		return nil, fmt.Errorf("start-glance.sh: %w", err)
	}
	src := &stormSource{name: "glance", glanceURL: strings.TrimSpace(string(out))}
	src.stop = func() {
		stop := exec.Command(filepath.Join(root, "scripts", "stop-glance.sh"))
		stop.Env = genv
		stop.Run()
	}
	fail := func(err error) (*stormSource, error) { src.stop(); return nil, err }
	fi, err := os.Stat(raw)
	if err != nil {
		return fail(err)
	}
	src.imageSize = fi.Size()
	e.logf("uploading the OS image (%s) to Glance at %s", sizeText(fi.Size()), src.glanceURL)
	id, err := glanceUpload(ctx, src.glanceURL, "basefs-bench storm", raw)
	if err != nil {
		return fail(err)
	}
	src.file = glanceref.NovaName(id)

	// publish reads Glance through a counting proxy of this process.
	up, _ := url.Parse(src.glanceURL)
	count := NewShaper(up, 0, 0)
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	psrv := &http.Server{Handler: count, ReadHeaderTimeout: 10 * time.Second}
	go psrv.Serve(pl)
	defer psrv.Close()
	state, err := e.dir("storm", "glance-publish-state")
	if err != nil {
		return fail(err)
	}
	scratch, err := e.dir("storm", "glance-publish")
	if err != nil {
		return fail(err)
	}
	e.logf("basefs publish glance://%s (the import reads the image from Glance)", id)
	pout, err := command(ctx, e.basefs, "publish", "--state", state, "--to", "dir://"+scratch,
		"--glance-endpoint", "http://"+pl.Addr().String(), "glance://"+id)
	if err != nil {
		return fail(err)
	}
	src.publishRead = count.Bytes()
	digest := ""
	if _, v, ok := strings.Cut(strings.TrimSpace(string(pout)), glance.ManifestProperty+"="); ok {
		digest, _, _ = strings.Cut(v, "\n")
	}
	if len(digest) != 64 {
		return fail(fmt.Errorf("basefs publish printed no %s=DIGEST: %s", glance.ManifestProperty, pout))
	}
	// The tier: the manifest alone (only the manifest was published to it).
	if src.tierDir, err = e.dir("storm", "glance-tier", "manifests"); err != nil {
		return fail(err)
	}
	b, err := os.ReadFile(filepath.Join(scratch, "manifests", digest))
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(src.tierDir, digest), b, 0o644); err != nil {
		return fail(err)
	}
	src.tierDir = filepath.Dir(src.tierDir)
	return src, nil
}

// glanceUpload creates a raw image named name in the Glance at ep and uploads the file
// at path as its data; it returns the image's id.
func glanceUpload(ctx context.Context, ep, name, path string) (string, error) {
	body, _ := json.Marshal(map[string]string{"name": name, "disk_format": "raw", "container_format": "bare"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, ep+"/v2/images", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("create a Glance image: %w", err)
	}
	var img struct {
		ID string `json:"id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&img)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusCreated || glanceref.ValidateID(img.ID) != nil {
		return "", fmt.Errorf("create a Glance image: HTTP %s (%v)", resp.Status, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, ep+"/v2/images/"+img.ID+"/file", f)
	req.Header.Set("Content-Type", "application/octet-stream")
	if resp, err = http.DefaultClient.Do(req); err != nil {
		return "", fmt.Errorf("upload to Glance image %s: %w", img.ID, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return "", fmt.Errorf("upload to Glance image %s: HTTP %s", img.ID, resp.Status)
	}
	return img.ID, nil
}

// nsCPU returns the CPU seconds (user + system) the processes in network namespace ns have
// used so far (processCPU of each; a process gone meanwhile is left out).
func nsCPU(ctx context.Context, ns string) (float64, error) {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return 0, fmt.Errorf("ip netns pids %s: %w", ns, err)
	}
	var sum time.Duration
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		if err != nil {
			return 0, fmt.Errorf("ip netns pids %s: %q is no pid", ns, f)
		}
		if c, err := processCPU(pid); err == nil {
			sum += c
		}
	}
	return sum.Seconds(), nil
}

// machineCPU returns the machine's busy and total CPU seconds so far, all cores (/proc/stat's
// cpu line: busy is everything but idle and iowait).
func machineCPU() (busy, total float64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var ticks [10]int64
	var sum int64
	for i := 1; i < len(f) && i <= 8; i++ { // user nice system idle iowait irq softirq steal
		fmt.Sscan(f[i], &ticks[i])
		sum += ticks[i]
	}
	return float64(sum-ticks[4]-ticks[5]) / userHZ, float64(sum) / userHZ, nil
}
