package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// basefs config shows what basefs mount would use and where each value came from; a mount
// refuses a bad file before it mounts anything.
func TestConfigCommand(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "a"), 0o755)
	os.MkdirAll(filepath.Join(dir, "b"), 0o755)
	nova := filepath.Join(dir, "nova.conf")
	os.WriteFile(nova, []byte("[DEFAULT]\nstate_path = "+dir+"/nova\ninstances_path = $state_path/instances\n[image_cache]\nremove_unused_base_images = False\nremove_unused_original_minimum_age_seconds = 3600\nmanager_interval = -1\n"), 0o644)
	conf := filepath.Join(dir, "basefs.conf")
	os.WriteFile(conf, []byte("[mount]\nnova_config = "+nova+"\ncache_size = 1073741824\norigin = dir://"+dir+"/a\norigin = dir://"+dir+"/b\n[status]\nstate = /srv/basefs\n[agent]\nconnect = qemu:///system\n"), 0o644)
	out := mustBasefs(t, "config", "--config", conf, "--scrub-rate", "0")
	for _, want := range []string{
		"# nova_config: " + conf + ":2\nnova_config = " + nova,
		"# cache_size: " + conf + ":3\ncache_size = 1073741824",
		"# origin: " + conf + ":5\norigin = dir://" + dir + "/b",
		"# instances_path: " + nova + ":3 [DEFAULT] instances_path\ninstances_path = " + dir + "/nova/instances",
		"# remove_unused_base_images: " + nova + ":5 [image_cache] remove_unused_base_images\nremove_unused_base_images = false",
		"# remove_unused_original_min_age: " + nova + ":6 [image_cache] remove_unused_original_minimum_age_seconds\nremove_unused_original_min_age = 3600",
		"# manager_interval: " + nova + ":7 [image_cache] manager_interval\nmanager_interval = 0s",
		"# scrub_rate: command line\nscrub_rate = 0",
		"# memory_cache: default\n#memory_cache = 268435456",
		"# mount point: " + dir + "/nova/instances/_base",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("basefs config lacks %q:\n%s", want, out)
		}
	}
	// [status] is status's: its --state comes from there.
	if _, stderr, _ := basefs(t, "status", "--config", conf); !strings.Contains(stderr, "/srv/basefs") {
		t.Errorf("basefs status did not use [status] state: %s", stderr)
	}
	// Mistakes: what and where, exit status non-zero, nothing mounted.
	mnt := filepath.Join(dir, "mnt")
	os.MkdirAll(mnt, 0o755)
	for file, want := range map[string]string{
		"[mount]\ncache_size = lots\n":                    conf + `:2: [mount] cache_size = "lots": invalid argument`,
		"[mount]\nmin_fre = 1\n":                          conf + ":2: [mount] min_fre: basefs mount has no such setting",
		"[mount]\nscrub_rate = -5\n":                      "--scrub-rate -5: must be 0 or more (scrub-rate set at " + conf + ":2)",
		"[muont]\nscrub_rate = 5\n":                       "section [muont]: no such command",
		"[mount]\nnova_config = /nonexistent/nova.conf\n": "--nova-config: open /nonexistent/nova.conf",
	} {
		os.WriteFile(conf, []byte(file), 0o644)
		_, stderr, code := basefs(t, "mount", "--config", conf, "--state", filepath.Join(dir, "state"), mnt)
		if code == 0 || !strings.Contains(stderr, want) {
			t.Errorf("mount with %q: exit %d, %s; want %q", file, code, stderr, want)
		}
		if _, err := os.Stat(filepath.Join(dir, "state")); err == nil {
			t.Errorf("mount with %q created its state before refusing", file)
		}
	}
}
