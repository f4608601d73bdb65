package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cmd/internal/config"
)

// parseFlags parses a command's arguments over its section of the configuration file (and,
// for the mount's flags, nova.conf): every flag of f is settable there.
func parseFlags(f *pflag.FlagSet, args []string) (*config.Result, error) {
	section := strings.TrimPrefix(f.Name(), "basefs ")
	if section == "serve" || section == "config" {
		section = "mount" // the serving process, and what the mount would use
	}
	var nova []config.NovaOption
	if f.Lookup("instances-path") != nil {
		nova = novaOptions
	}
	known := []string{config.AgentSection} // basefs-agent reads the same file
	for n, c := range commands {
		if !c.hidden && n != "config" {
			known = append(known, n)
		}
	}
	return config.Parse(f, args, config.Options{Section: section, Known: known, DefaultPath: config.DefaultPath(), Nova: nova})
}

// novaOptions are what the mount takes from nova.conf (--nova-config), with nova's defaults
// and deprecated names (nova/conf/imagecache.py, nova/conf/compute.py).
var novaOptions = []config.NovaOption{
	{Section: "DEFAULT", Key: "instances_path", Flag: "instances-path", Default: "$state_path/instances"},
	{Section: "image_cache", Key: "remove_unused_base_images", Flag: "remove-unused-base-images", Default: "true",
		Deprecated: [][2]string{{"DEFAULT", "remove_unused_base_images"}}},
	{Section: "image_cache", Key: "remove_unused_original_minimum_age_seconds", Flag: "remove-unused-original-min-age", Default: "86400",
		Deprecated: [][2]string{{"DEFAULT", "remove_unused_original_minimum_age_seconds"}}},
	{Section: "image_cache", Key: "remove_unused_resized_minimum_age_seconds",
		Deprecated: [][2]string{{"libvirt", "remove_unused_resized_minimum_age_seconds"}},
		Convert: func(string) (string, bool, string, error) {
			return "", false, "resized views are computed from their image, never stored: there is nothing to remove", nil
		}},
	{Section: "image_cache", Key: "manager_interval", Flag: "manager-interval", Default: "2400",
		Deprecated: [][2]string{{"DEFAULT", "image_cache_manager_interval"}}, Convert: novaInterval},
}

// novaInterval maps nova's manager_interval (seconds; -1: never; 0: nova's periodic default
// of 60 s) to --manager-interval.
func novaInterval(v string) (string, bool, string, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	switch {
	case err != nil:
		return "", false, "", fmt.Errorf("not a number of seconds")
	case n < -1:
		return "", false, "", fmt.Errorf("must be -1 (never), 0 (every 60 s) or more")
	case n == -1:
		return "0", true, "", nil
	case n == 0:
		return "60s", true, "", nil
	}
	return fmt.Sprintf("%ds", n), true, "", nil
}

// novaBase is nova's image cache directory: instances_path/subdirectory_name.
func novaBase(nova *config.INI) string {
	inst := "$state_path/instances"
	if e, ok := nova.Get("DEFAULT", "instances_path"); ok {
		inst = e.Value
	}
	sub := "_base"
	if e, ok := nova.Get("image_cache", "subdirectory_name"); ok {
		sub = e.Value
	} else if e, ok := nova.Get("DEFAULT", "image_cache_subdirectory_name"); ok {
		sub = e.Value
	}
	return filepath.Join(nova.Expand(inst, map[string]string{"state_path": "/var/lib/nova"}), nova.Expand(sub, nil))
}

// mountPoint is the mount's MOUNTPOINT argument, else nova's image cache directory.
func mountPoint(f *pflag.FlagSet, r *config.Result) (string, error) {
	switch {
	case f.NArg() == 1:
		return filepath.Abs(f.Arg(0))
	case f.NArg() == 0 && r.Nova != nil:
		return novaBase(r.Nova), nil
	}
	return "", usageError{Msg: "want exactly one MOUNTPOINT (or --nova-config: then nova's instances_path/_base)"}
}

// explain adds to a validation error where the values it names came from.
func explain(r *config.Result, err error) error {
	var ue usageError
	if errors.As(err, &ue) {
		return usageError{Msg: r.Explain(ue.Msg)}
	}
	return errors.New(r.Explain(err.Error()))
}

func init() {
	register("config", command{
		summary: "print the mount's effective configuration and where each value came from",
		usage:   "config --sample | config [--config FILE] [--nova-config FILE] [mount flags] [MOUNTPOINT]",
		run:     runConfig,
	})
}

// runConfig checks the configuration as `basefs mount` would, and prints it.
func runConfig(ctx context.Context, args []string) error {
	if len(args) == 1 && args[0] == "--sample" {
		var o mountOptions
		f := newFlags("mount")
		o.AddFlags(f)
		config.PrintSample(os.Stdout, f, "mount", sampleHeader)
		return nil
	}
	_, f, r, mnt, err := parseMount(ctx, "config", args)
	if err != nil {
		return err
	}
	config.Print(os.Stdout, f, "mount", r)
	fmt.Printf("# mount point: %s\n", mnt)
	return nil
}

// sampleHeader opens the default /etc/basefs/basefs.conf the package installs.
const sampleHeader = `# /etc/basefs/basefs.conf — basefs's configuration, in nova's INI style.
#
# Each [section] is a basefs command; each key is one of its flags (basefs COMMAND --help),
# written with _ or -; a repeatable flag is a repeated key. A flag on the command line (or in
# the systemd unit) overrides the file. An unknown section or key, or a bad value, stops the
# command with the file and line before it does anything. "basefs config" prints what the
# mount will use and where each value comes from.
#
# On a compute host, let nova's own file give the instances path and the image cache policy
# ([DEFAULT] instances_path; [image_cache] remove_unused_base_images,
# remove_unused_original_minimum_age_seconds, manager_interval):
#   nova_config = /etc/nova/nova.conf
#
# Everything below is commented out: the defaults apply. This file is generated by
# "basefs config --sample".

`
