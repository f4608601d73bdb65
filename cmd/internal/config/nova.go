package config

import (
	"regexp"
	"strings"
)

// novaDefaults are nova's own defaults for the options other options refer to ($state_path).
var novaDefaults = map[string]string{"state_path": "/var/lib/nova"}

var novaRef = regexp.MustCompile(`\$(\{[A-Za-z_][A-Za-z0-9_]*\}|[A-Za-z_][A-Za-z0-9_]*)`)

// Expand replaces $name and ${name} in v with [DEFAULT]'s name, else defaults' (as
// oslo.config interpolates nova.conf: instances_path = $state_path/instances). `$$` is a `$`.
func (f *INI) Expand(v string, defaults map[string]string) string {
	const dollar = "\x00"
	v = strings.ReplaceAll(v, "$$", dollar)
	for range 8 { // references to references, bounded
		nv := novaRef.ReplaceAllStringFunc(v, func(m string) string {
			name := m[1:]
			if name[0] == '{' {
				name = name[1 : len(name)-1]
			}
			if e, ok := f.Get("DEFAULT", name); ok {
				return e.Value
			}
			if d, ok := defaults[name]; ok {
				return d
			}
			return m
		})
		if nv == v {
			break
		}
		v = nv
	}
	return strings.ReplaceAll(v, dollar, "$")
}
