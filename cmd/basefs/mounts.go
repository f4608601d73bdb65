package main

import (
	"context"
	"fmt"
	"os"
)

func init() {
	register("mounts", command{
		summary: "list this host's basefs mounts and the binary serving each",
		usage:   "mounts [--binary PATH]",
		run:     runMounts,
	})
}

// runMounts lists the basefs mounts of this host (the mount table's fuse.basefs entries), one
// mount point a line; with --binary only those whose supervisor runs that file (as installed,
// or since replaced by an upgrade): what the package's maintainer scripts act on, leaving
// mounts served by another copy of basefs alone.
func runMounts(ctx context.Context, args []string) error {
	f := newFlags("mounts")
	binary := f.String("binary", "", "only mounts whose supervisor runs this executable (e.g. /usr/bin/basefs)")
	verbose := f.BoolP("long", "l", false, "also print each supervisor's pid and executable")
	if _, err := parseFlags(f, args); err != nil {
		return err
	}
	if f.NArg() != 0 {
		return usageError{Msg: "no arguments"}
	}
	mnts, err := basefsMounts()
	if err != nil {
		return err
	}
	for _, m := range mnts {
		pid, err := supervisorOf(m)
		exe := "?"
		if err == nil {
			if exe, err = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err != nil {
				exe = "?"
			}
		}
		if *binary != "" && exe != *binary && exe != *binary+" (deleted)" {
			continue
		}
		if *verbose {
			fmt.Printf("%s\t%d\t%s\n", m, pid, exe)
		} else {
			fmt.Println(m)
		}
	}
	return nil
}

// basefsMounts returns the mount points of fuse.basefs file systems in this mount namespace.
func basefsMounts() ([]string, error) {
	ms, err := mountTable()
	var out []string
	for _, m := range ms {
		if m.fstype == "fuse.basefs" {
			out = append(out, m.point)
		}
	}
	return out, err
}
