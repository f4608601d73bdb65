package config

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// flags is a command's flag set as the basefs commands build theirs; nothing in this package
// knows these names.
type flags struct {
	state    string
	origins  []string
	size     int64
	debug    bool
	interval time.Duration
	paths    []string
	internal bool
}

func newSet() (*pflag.FlagSet, *flags) {
	var o flags
	f := pflag.NewFlagSet("basefs mount", pflag.ContinueOnError)
	f.StringVar(&o.state, "state", "/var/lib/basefs", "")
	f.StringArrayVar(&o.origins, "origin", nil, "")
	f.Int64Var(&o.size, "cache-size", -1, "")
	f.BoolVar(&o.debug, "debug", false, "")
	f.DurationVar(&o.interval, "manager-interval", 10*time.Minute, "")
	f.StringArrayVar(&o.paths, "instances-path", []string{"/var/lib/basefs/instances"}, "")
	f.BoolVar(&o.internal, "adopt", false, "")
	f.MarkHidden("adopt")
	return f, &o
}

var testNova = []NovaOption{
	{Section: "DEFAULT", Key: "instances_path", Flag: "instances-path", Default: "$state_path/instances"},
	{Section: "image_cache", Key: "manager_interval", Flag: "manager-interval", Default: "2400",
		Deprecated: [][2]string{{"DEFAULT", "image_cache_manager_interval"}}},
	{Section: "image_cache", Key: "resized", Convert: func(string) (string, bool, string, error) { return "", false, "meaningless", nil }},
	{Section: "image_cache", Key: "other", Flag: "no-such-flag-here"},
}

func write(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func parse(t *testing.T, args ...string) (*flags, *Result, error) {
	t.Helper()
	f, o := newSet()
	r, err := Parse(f, args, Options{Section: "mount", Known: []string{"mount", "status"}, Nova: testNova})
	return o, r, err
}

// Every flag is settable in the file; the command line overrides it (a repeatable flag's
// values as a whole); nova.conf fills what neither sets; each value's source is kept.
func TestPrecedenceAndSources(t *testing.T) {
	conf := write(t, "basefs.conf", `# comment
[status]
state = /elsewhere
[mount]
state = /srv/first
state = /srv/basefs
origin = dir:///a
origin = "dir:///b"
cache-size = 1000
debug: yes
manager_interval = 90
`)
	nova := write(t, "nova.conf", "[DEFAULT]\nstate_path = /srv/nova\n[image_cache]\nresized = 5\n")
	o, r, err := parse(t, "--config", conf, "--nova-config", nova, "--cache-size", "7", "--origin", "dir:///c", "/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if o.state != "/srv/basefs" || o.size != 7 || !o.debug || o.interval != 90*time.Second ||
		strings.Join(o.origins, ",") != "dir:///c" || strings.Join(o.paths, ",") != "/srv/nova/instances" {
		t.Fatalf("values: %+v", o)
	}
	for name, want := range map[string]string{"state": conf + ":6", "cache-size": "command line", "origin": "command line",
		"debug": conf + ":10", "manager-interval": conf + ":11", "instances-path": "nova's default for [DEFAULT] instances_path (absent from " + nova + ")"} {
		if got := r.Source(name).String(); got != want {
			t.Errorf("source of %s: %q, want %q", name, got, want)
		}
	}
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], nova+":4 [image_cache] resized = 5: meaningless") {
		t.Errorf("notes: %q", r.Notes)
	}
	// Without the command line, the file's repeated keys are the repeatable flag's values.
	o, r, err = parse(t, "--config", conf, "/mnt")
	if err != nil || strings.Join(o.origins, ",") != "dir:///a,dir:///b" || r.Sources["origin"][1].Line != 8 || o.size != 1000 {
		t.Fatalf("file only: %+v %v", o, err)
	}
	// Explain says where a refused value came from.
	if got := r.Explain("--cache-size 1000: too big"); !strings.Contains(got, "cache-size set at "+conf+":9") {
		t.Errorf("explain: %s", got)
	}
	// nova.conf's own value, under its deprecated name too; $state_path expanded.
	nova2 := write(t, "nova.conf", "[DEFAULT]\ninstances_path = ${state_path}/x\nimage_cache_manager_interval = 30\n")
	o, r, err = parse(t, "--nova-config", nova2, "/mnt")
	if err != nil || o.interval != 30*time.Second || o.paths[0] != "/var/lib/nova/x" || r.Source("manager-interval").Line != 3 {
		t.Fatalf("nova.conf: %+v %v", o, err)
	}
	// What Print writes is a file that gives the same configuration again.
	f, o := newSet()
	r, err = Parse(f, []string{"--config", conf, "--nova-config", nova, "--debug=false", "/mnt"}, Options{Section: "mount", Known: []string{"mount", "status"}, Nova: testNova})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	Print(&buf, f, "mount", r)
	again := write(t, "again.conf", buf.String())
	o2, _, err := parse(t, "--config", again, "/mnt")
	if err != nil || o2.state != o.state || strings.Join(o2.origins, ",") != strings.Join(o.origins, ",") || o2.debug || o2.interval != o.interval || o2.paths[0] != o.paths[0] {
		t.Fatalf("printed configuration read again: %+v vs %+v (%v)\n%s", o2, o, err, buf.String())
	}
}

// Every mistake in a file is an error naming the file and line, before anything is done.
func TestErrors(t *testing.T) {
	for _, c := range []struct{ name, file, nova, want string }{
		{"unknown key", "[mount]\ncache_sise = 1\n", "", ":2: [mount] cache_sise: basefs mount has no such setting"},
		{"hidden flag", "[mount]\nadopt = true\n", "", ":2: [mount] adopt: basefs mount has no such setting"},
		{"config in the file", "[mount]\nconfig = /x\n", "", ":2: [mount] config: basefs mount has no such setting"},
		{"bad number", "[mount]\n\ncache_size = 10G\n", "", `:3: [mount] cache_size = "10G": invalid argument`},
		{"bad bool", "[mount]\ndebug = maybe\n", "", `:2: [mount] debug = "maybe"`},
		{"unknown section", "[muont]\nstate = /x\n", "", "section [muont]: no such command (sections are named after basefs commands: mount, status)"},
		{"outside a section", "state = /x\n", "", `:1: "state = /x" is outside any [section]`},
		{"not key = value", "[mount]\njunk\n", "", `:2: "junk" is not`},
		{"bad header", "[mount\n", "", ":1: bad section header"},
		{"stray indent", "[mount]\n  x\n", "", ":2: an indented line continues no value"},
		{"bad nova value", "", "[image_cache]\nmanager_interval = soon\n", `:2 [image_cache] manager_interval: [image_cache] manager_interval = "soon"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"/mnt"}
			if c.file != "" {
				args = append(args, "--config", write(t, "basefs.conf", c.file))
			}
			if c.nova != "" {
				args = append(args, "--nova-config", write(t, "nova.conf", c.nova))
			}
			_, _, err := parse(t, args...)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
	// A file named on the command line must exist; the default one need not.
	if _, _, err := parse(t, "--config", "/nonexistent/basefs.conf"); err == nil {
		t.Fatal("a missing --config file was accepted")
	}
	f, _ := newSet()
	if _, err := Parse(f, nil, Options{Section: "mount", DefaultPath: "/nonexistent/basefs.conf"}); err != nil {
		t.Fatalf("a missing default file: %v", err)
	}
	if _, _, err := parse(t, "--nova-config", "/nonexistent/nova.conf"); err == nil {
		t.Fatal("a missing --nova-config file was accepted")
	}
}

func TestParseINIContinuationAndQuotes(t *testing.T) {
	ini, err := ParseINI("x", []byte("[a]\nk = 'v'\n  more\n; c\n[a]\nk: 2\n"))
	if err != nil {
		t.Fatal(err)
	}
	if es := ini.Entries["a"]; len(es) != 2 || es[0].Value != "v\nmore" || es[1].Value != "2" || len(ini.Sections) != 1 {
		t.Fatalf("%+v", ini)
	}
	if e, _ := ini.Get("a", "k"); e.Value != "2" || e.Line != 6 {
		t.Fatalf("the last value wins: %+v", e)
	}
}
