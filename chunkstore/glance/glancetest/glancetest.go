// Package glancetest runs a real, Keystone-less Glance on loopback for tests
// (scripts/start-glance.sh), one per test process in its own state directory and port, and
// uploads images to it. Call Stop from TestMain (after m.Run).
package glancetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/basefs/basefs/chunkstore/testenv"
)

var (
	once     sync.Once
	dir      string
	endpoint string
	startErr error
	script   string
)

// Start starts this process's Glance (once) and returns its endpoint.
func Start(t testing.TB) string {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedBinary(t, "bash", "curl")
	once.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			startErr = err
			return
		}
		script = filepath.Join(root, "scripts", "start-glance.sh")
		dir, startErr = os.MkdirTemp("", "basefs-glancetest")
		if startErr != nil {
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			startErr = err
			return
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		cmd := exec.Command(script)
		cmd.Env = append(os.Environ(), "BASEFS_GLANCE_DIR="+dir, "BASEFS_GLANCE_PORT="+strconv.Itoa(port))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			startErr = fmt.Errorf("scripts/start-glance.sh: %v: %s", err, stderr.String())
			return
		}
		endpoint = strings.TrimSpace(string(out))
	})
	if startErr != nil {
		testenv.Skip(t, "cannot start Glance: "+startErr.Error())
	}
	return endpoint
}

// Stop stops the Glance Start started and removes its state.
func Stop() {
	if dir == "" {
		return
	}
	cmd := exec.Command(filepath.Join(filepath.Dir(script), "stop-glance.sh"))
	cmd.Env = append(os.Environ(), "BASEFS_GLANCE_DIR="+dir)
	cmd.Run()
	os.RemoveAll(dir)
}

// DataPath returns the file in which Glance keeps image id's data (to corrupt it).
func DataPath(id string) string { return filepath.Join(dir, "images", id) }

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
