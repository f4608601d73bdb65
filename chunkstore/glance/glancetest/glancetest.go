// Package glancetest runs a real, Keystone-less Glance on loopback for tests
// (scripts/start-glance.sh), one per test process in its own state directory and port, and
// uploads images to it. Call Stop from TestMain (after m.Run).
package glancetest

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/testenv"
)

// glance is this process's Glance; endpoint is its URL.
var (
	glance   = testenv.Service{Name: "Glance", DirVar: "BASEFS_GLANCE_DIR", TempDir: "basefs-glancetest"}
	endpoint string
)

// Start starts this process's Glance (once) and returns its endpoint.
func Start(t testing.TB) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "bash", "curl")
	glance.Start(t, func() error {
		port, err := testenv.FreePort()
		if err != nil {
			return err
		}
		out, err := glance.Run("start-glance.sh", []string{"BASEFS_GLANCE_PORT=" + strconv.Itoa(port)})
		if err != nil {
			return err
		}
		endpoint = strings.TrimSpace(string(out))
		return nil
	})
	return endpoint
}

// Stop stops the Glance Start started and removes its state.
func Stop() { glance.Stop("stop-glance.sh") }

// Down stops this process's Glance (scripts/stop-glance.sh), keeping its images: a real
// outage. Up starts it again on the same port.
func Down(t testing.TB) {
	t.Helper()
	if _, err := glance.Run("stop-glance.sh", nil); err != nil {
		t.Fatal(err)
	}
}

// Up starts the Glance Down stopped again, on the same port, and waits until it answers.
func Up(t testing.TB) {
	t.Helper()
	u, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := glance.Run("start-glance.sh", []string{"BASEFS_GLANCE_PORT=" + u.Port()}); err != nil {
		t.Fatal(err)
	}
}

// DataPath returns the file in which Glance keeps image id's data (to corrupt it).
func DataPath(id string) string { return filepath.Join(glance.Dir(), "images", id) }

var hc = &http.Client{Timeout: 60 * time.Second}

// Create creates an image record (no data) and returns its id.
func Create(t testing.TB, name, diskFormat, containerFormat string) string {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"name": name, "disk_format": diskFormat, "container_format": containerFormat})
	resp, err := hc.Post(endpoint+"/v2/images", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create Glance image: HTTP %d: %v", resp.StatusCode, err)
	}
	return out.ID
}

// Upload creates an image and uploads the file at path as its data; it returns the id.
func Upload(t testing.TB, name, diskFormat, containerFormat, path string) string {
	t.Helper()
	id := Create(t, name, diskFormat, containerFormat)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	req, _ := http.NewRequest(http.MethodPut, endpoint+"/v2/images/"+id+"/file", f)
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("upload Glance image: HTTP %d", resp.StatusCode)
	}
	return id
}

// Corrupt flips one byte of image id's stored data at off (Glance does not notice).
func Corrupt(t testing.TB, id string, off int64) {
	t.Helper()
	f, err := os.OpenFile(DataPath(id), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// Meta returns image id's metadata as Glance shows it (its custom properties included).
func Meta(t testing.TB, id string) map[string]any {
	t.Helper()
	resp, err := hc.Get(endpoint + "/v2/images/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("show Glance image %s: HTTP %d, %v", id, resp.StatusCode, err)
	}
	return m
}

// Main is a TestMain for a package whose tests use this process's Glance: it runs them,
// stops the Glance they started and exits with their status.
func Main(m *testing.M) {
	code := m.Run()
	Stop()
	os.Exit(code)
}
