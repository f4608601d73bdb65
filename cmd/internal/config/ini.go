package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxFileBytes bounds a configuration file read into memory.
const maxFileBytes = 1 << 20

// Entry is one `key = value` line of an INI file.
type Entry struct {
	Key, Value string
	Line       int
}

// INI is a parsed file: its sections in order, each with its entries in order. Section names
// are kept as written; [DEFAULT] is a section like the others here.
type INI struct {
	Path     string
	Sections []string
	Entries  map[string][]Entry
}

// Get returns the last value of key in section (as oslo.config reads a single-valued option).
func (f *INI) Get(section, key string) (Entry, bool) {
	es := f.Entries[section]
	for i := len(es) - 1; i >= 0; i-- {
		if es[i].Key == key {
			return es[i], true
		}
	}
	return Entry{}, false
}

// ReadINI reads and parses the INI file at path (at most 1 MiB).
func ReadINI(path string) (*INI, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes: not a configuration file", path, maxFileBytes)
	}
	return ParseINI(path, b)
}

// ParseINI parses an INI file the way oslo.config's parser reads nova.conf: `[section]`
// headers, `key = value` or `key: value` (the first `=` or `:` separates), `#` and `;`
// comment lines, an indented line continuing the previous value, matching quotes around a
// value removed. A line outside any section, or that is none of these, is an error.
func ParseINI(path string, b []byte) (*INI, error) {
	ini := &INI{Path: path, Entries: map[string][]Entry{}}
	section := ""
	var last *Entry
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), maxFileBytes)
	for n := 1; sc.Scan(); n++ {
		raw := strings.TrimRight(sc.Text(), "\r")
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			last = nil
			continue
		case raw[0] == ' ' || raw[0] == '\t':
			if last == nil {
				return nil, fmt.Errorf("%s:%d: an indented line continues no value: %q", path, n, line)
			}
			last.Value += "\n" + line
			continue
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") || strings.TrimSpace(line[1:len(line)-1]) == "" {
				return nil, fmt.Errorf("%s:%d: bad section header %q (want [NAME])", path, n, line)
			}
			section = strings.TrimSpace(line[1 : len(line)-1])
			if _, ok := ini.Entries[section]; !ok {
				ini.Sections = append(ini.Sections, section)
				ini.Entries[section] = nil
			}
			last = nil
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i <= 0 {
			return nil, fmt.Errorf("%s:%d: %q is not `key = value`", path, n, line)
		}
		if section == "" {
			return nil, fmt.Errorf("%s:%d: %q is outside any [section]", path, n, line)
		}
		e := Entry{Key: strings.TrimSpace(line[:i]), Value: unquote(strings.TrimSpace(line[i+1:])), Line: n}
		ini.Entries[section] = append(ini.Entries[section], e)
		es := ini.Entries[section]
		last = &es[len(es)-1]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ini, nil
}

func unquote(v string) string {
	if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
		return v[1 : len(v)-1]
	}
	return v
}
