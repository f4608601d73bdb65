package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cmd/internal/cli"
)

// Source is where a flag's value came from.
type Source struct {
	Kind string // "default", "flag" (the command line), "file" or "nova"
	Path string // the file, for "file" and "nova"
	Line int    // its line (0: the option is absent and nova's default applies)
	What string // for "nova": the nova option, e.g. "[image_cache] manager_interval"
}

func (s Source) String() string {
	switch s.Kind {
	case "flag":
		return "command line"
	case "file":
		return fmt.Sprintf("%s:%d", s.Path, s.Line)
	case "nova":
		if s.Line == 0 {
			return fmt.Sprintf("nova's default for %s (absent from %s)", s.What, s.Path)
		}
		return fmt.Sprintf("%s:%d %s", s.Path, s.Line, s.What)
	}
	return "default"
}

// NovaOption takes one option of nova.conf into a flag.
type NovaOption struct {
	Section, Key string // in nova.conf
	// Deprecated are older [section, key] names nova still reads, when the option is absent.
	Deprecated [][2]string
	Flag       string // the flag it sets; a command without this flag ignores the option
	// Default is nova's own default, used when the option is absent ("": then the flag keeps
	// its own).
	Default string
	// Convert turns nova's value (after $name expansion) into the flag's. ok false: the
	// value means nothing to basefs, and note says why (`basefs config` shows it).
	Convert func(v string) (flagValue string, ok bool, note string, err error)
}

// Options say what a command reads.
type Options struct {
	Section string   // the command's section
	Known   []string // every section a file may have (the commands); nil: not checked here
	// Keys, when set, are the only flags the section may set (a section several commands
	// share: basefs-agent's [agent] holds what all its commands take).
	Keys        []string
	DefaultPath string       // read when it exists and --config is not given ("": none)
	Nova        []NovaOption // nil: the command has no --nova-config
}

// DefaultPath is the file both binaries read their sections of when --config does not name
// another; it need not exist. BASEFS_CONFIG, when set, replaces it ("": no file; the tests
// set it so that a host's own file never changes them).
func DefaultPath() string {
	if p, ok := os.LookupEnv("BASEFS_CONFIG"); ok {
		return p
	}
	return "/etc/basefs/basefs.conf"
}

// AgentSection is basefs-agent's section: the settings all its commands share (AgentKeys).
const AgentSection = "agent"

// AgentKeys are the flags [agent] may set.
var AgentKeys = []string{"instances-path", "connect", "kernel-dir", "verbose"}

// Result is where the command's flags' values came from.
type Result struct {
	ConfigPath string              // the file read ("" if none)
	NovaPath   string              // nova.conf read ("" if none)
	Nova       *INI                // and what it says
	Sources    map[string][]Source // by flag name; a flag absent here has its default
	Notes      []string            // what nova.conf said that means nothing here
}

// Source returns where flag name's value came from.
func (r *Result) Source(name string) Source {
	if s := r.Sources[name]; len(s) > 0 {
		return s[0]
	}
	return Source{Kind: "default"}
}

// Parse registers --config (and --nova-config when o.Nova is set) on f, parses args, and
// gives every flag the command line left alone its value from the file, else from nova.conf.
// A mistake on the command line is a cli.UsageError; one in a file names the file and line.
func Parse(f *pflag.FlagSet, args []string, o Options) (*Result, error) {
	if f.Lookup("config") == nil {
		f.String("config", o.DefaultPath, "INI `FILE` with a ["+o.Section+"] section setting this command's flags (one key per flag, _ or -; \"\": none); flags given here override it")
	}
	if o.Nova != nil && f.Lookup("nova-config") == nil {
		f.String("nova-config", "", "nova's configuration `FILE` (e.g. /etc/nova/nova.conf): instances_path and the [image_cache] cleanup policy are taken from it unless set here or in --config")
	}
	if err := cli.Parse(f, args); err != nil {
		return nil, err
	}
	r := &Result{Sources: map[string][]Source{}}
	var cmdline []string
	f.Visit(func(fl *pflag.Flag) {
		cmdline = append(cmdline, fl.Name)
		r.Sources[fl.Name] = []Source{{Kind: "flag"}}
	})
	path := f.Lookup("config").Value.String()
	if path != "" {
		ini, err := ReadINI(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !f.Changed("config"):
		case err != nil:
			return nil, fmt.Errorf("--config: %w", err)
		default:
			r.ConfigPath = path
			if err := r.apply(f, ini, o); err != nil {
				return nil, err
			}
		}
	}
	if o.Nova != nil {
		if np := f.Lookup("nova-config").Value.String(); np != "" {
			nova, err := ReadINI(np)
			if err != nil {
				return nil, fmt.Errorf("--nova-config: %w", err)
			}
			r.NovaPath, r.Nova = np, nova
			if err := r.applyNova(f, nova, o.Nova); err != nil {
				return nil, err
			}
		}
	}
	// The command line wins: parse it again over the file's values.
	for _, name := range cmdline {
		if sv, ok := f.Lookup(name).Value.(pflag.SliceValue); ok {
			if err := sv.Replace(nil); err != nil {
				return nil, err
			}
		}
	}
	if err := cli.Parse(f, args); err != nil {
		return nil, err
	}
	return r, nil
}

// apply sets the flags of the command's section of ini, checking every section's name.
func (r *Result) apply(f *pflag.FlagSet, ini *INI, o Options) error {
	for _, s := range ini.Sections {
		if o.Known != nil && !slices.Contains(o.Known, s) {
			return fmt.Errorf("%s: section [%s]: no such command (sections are named after basefs commands: %s)", ini.Path, s, strings.Join(o.Known, ", "))
		}
	}
	for _, e := range ini.Entries[o.Section] {
		name := strings.ReplaceAll(e.Key, "_", "-")
		fl := f.Lookup(name)
		if o.Keys != nil && !slices.Contains(o.Keys, name) {
			return fmt.Errorf("%s:%d: [%s] %s: no such setting (the section's settings: %s)", ini.Path, e.Line, o.Section, e.Key, strings.ReplaceAll(strings.Join(o.Keys, ", "), "-", "_"))
		}
		if fl == nil || fl.Hidden || name == "config" {
			return fmt.Errorf("%s:%d: [%s] %s: basefs %s has no such setting (basefs %s --help lists them)", ini.Path, e.Line, o.Section, e.Key, o.Section, o.Section)
		}
		if err := set(f, fl, e.Value); err != nil {
			return fmt.Errorf("%s:%d: [%s] %s = %q: %v", ini.Path, e.Line, o.Section, e.Key, e.Value, err)
		}
		src := Source{Kind: "file", Path: ini.Path, Line: e.Line}
		_, multi := fl.Value.(pflag.SliceValue)
		switch {
		case fromCommandLine(r, name): // the command line wins
		case multi:
			r.Sources[name] = append(r.Sources[name], src)
		default:
			r.Sources[name] = []Source{src} // the last one is the value
		}
	}
	return nil
}

// applyNova sets the flags nova's options map to, where neither the command line nor the
// file set them.
func (r *Result) applyNova(f *pflag.FlagSet, nova *INI, opts []NovaOption) error {
	for _, no := range opts {
		fl := f.Lookup(no.Flag)
		if fl == nil && no.Flag != "" {
			continue // not a flag of this command
		}
		what := fmt.Sprintf("[%s] %s", no.Section, no.Key)
		src := Source{Kind: "nova", Path: nova.Path, What: what}
		v := no.Default
		if e, ok := no.lookup(nova); ok {
			v, src.Line = e.Value, e.Line
		} else if v == "" {
			continue
		}
		v = nova.Expand(v, novaDefaults)
		if fl != nil && len(r.Sources[no.Flag]) > 0 {
			continue // set on the command line or in the file
		}
		fv, ok := v, true
		var note string
		if no.Convert != nil {
			var err error
			if fv, ok, note, err = no.Convert(v); err != nil {
				return fmt.Errorf("%s: %s = %q: %v", src, what, v, err)
			}
		}
		if !ok || fl == nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s = %s: %s", src, v, note))
			continue
		}
		if err := set(f, fl, fv); err != nil {
			return fmt.Errorf("%s: %s = %q: %v", src, what, v, err)
		}
		r.Sources[no.Flag] = []Source{src}
	}
	return nil
}

// lookup finds the option under its name, else under a deprecated one.
func (no NovaOption) lookup(nova *INI) (Entry, bool) {
	if e, ok := nova.Get(no.Section, no.Key); ok {
		return e, true
	}
	for _, d := range no.Deprecated {
		if e, ok := nova.Get(d[0], d[1]); ok {
			return e, true
		}
	}
	return Entry{}, false
}

func fromCommandLine(r *Result, name string) bool {
	s := r.Sources[name]
	return len(s) > 0 && s[0].Kind == "flag"
}

// set gives fl the value v written in nova's style: a boolean may be yes/no/on/off, a
// duration a bare number of seconds.
func set(f *pflag.FlagSet, fl *pflag.Flag, v string) error {
	switch fl.Value.Type() {
	case "bool":
		switch strings.ToLower(v) {
		case "yes", "on":
			v = "true"
		case "no", "off":
			v = "false"
		}
	case "duration":
		if _, err := strconv.ParseInt(v, 10, 64); err == nil {
			v += "s"
		}
	}
	return f.Set(fl.Name, v)
}

var flagRef = regexp.MustCompile(`--([a-z0-9][a-z0-9-]*)`)

// Explain adds to an error message that names flags (--name) where each such flag's value
// came from, when it was not the command line.
func (r *Result) Explain(msg string) string {
	var where []string
	for _, m := range flagRef.FindAllStringSubmatch(msg, -1) {
		if s := r.Sources[m[1]]; len(s) > 0 && s[0].Kind != "flag" {
			where = append(where, fmt.Sprintf("%s set at %s", m[1], s[0]))
		}
	}
	if len(where) == 0 {
		return msg
	}
	return msg + " (" + strings.Join(where, "; ") + ")"
}

// Print writes the effective configuration as a file of the same format, each value under a
// comment saying where it came from, defaults commented out: what `basefs config` shows, and
// a file that gives the same configuration again.
func Print(w io.Writer, f *pflag.FlagSet, section string, r *Result) {
	fmt.Fprintf(w, "# effective configuration of basefs %s\n", section)
	fmt.Fprintf(w, "# config file: %s\n", orNone(r.ConfigPath))
	if f.Lookup("nova-config") != nil {
		fmt.Fprintf(w, "# nova.conf: %s\n", orNone(r.NovaPath))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "# not used: %s\n", n)
	}
	fmt.Fprintf(w, "[%s]\n", section)
	f.VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden || fl.Name == "config" {
			return
		}
		key := strings.ReplaceAll(fl.Name, "-", "_")
		srcs := r.Sources[fl.Name]
		line := func(i int, v string) {
			if len(srcs) == 0 {
				fmt.Fprintf(w, "# %s: default\n#%s = %s\n", key, key, v)
				return
			}
			fmt.Fprintf(w, "# %s: %s\n%s = %s\n", key, srcs[min(i, len(srcs)-1)], key, v)
		}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			vals := sv.GetSlice()
			if len(vals) == 0 {
				fmt.Fprintf(w, "# %s: none\n", key)
			}
			for i, v := range vals {
				line(i, v)
			}
			return
		}
		line(0, fl.Value.String())
	})
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// PrintSample writes a commented file that sets nothing: every flag of f (but hidden ones)
// with its help and its default, commented out, under [section] — the default configuration
// a package installs, made from the flags themselves so that a new flag appears in it.
func PrintSample(w io.Writer, f *pflag.FlagSet, section, header string) {
	fmt.Fprint(w, header)
	fmt.Fprintf(w, "[%s]\n", section)
	f.VisitAll(func(fl *pflag.Flag) {
		if fl.Hidden || fl.Name == "config" {
			return
		}
		key := strings.ReplaceAll(fl.Name, "-", "_")
		fmt.Fprintln(w)
		_, usage := pflag.UnquoteUsage(fl)
		for _, l := range wrap(usage, 76) {
			fmt.Fprintf(w, "# %s\n", l)
		}
		vals := []string{fl.DefValue}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			vals = sv.GetSlice()
			if f.Changed(fl.Name) || len(vals) == 0 {
				vals = []string{""}
			}
		}
		for _, v := range vals {
			fmt.Fprintf(w, "#%s = %s\n", key, v)
		}
	})
}

func wrap(s string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(s) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}
