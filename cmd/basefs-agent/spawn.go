package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/cmd/internal/cli"
)

type spawnOptions struct {
	hostOptions
	id        string
	image     string
	diskSize  string
	vcpus     int
	memory    string
	virtType  string
	kernel    string
	initrd    string
	cmdline   string
	cacheMode string
	base      string
}

// defaultVirtType is $BASEFS_VIRT_TYPE, else kvm (nova's default).
func defaultVirtType() string {
	if v := os.Getenv("BASEFS_VIRT_TYPE"); v != "" {
		return v
	}
	return agent.DefaultVirtType
}

func (o *spawnOptions) AddFlags(f *pflag.FlagSet) {
	instanceOption(f, &o.id)
	f.StringVar(&o.image, "image", "", "the image `REF`: its digest, as 'basefs import' prints it (required)")
	f.StringVar(&o.diskSize, "disk-size", "", "the instance disk's `SIZE`, at least the image's: bytes, or with a unit K, M, G, T (powers of 1024; also KiB, MiB, GiB, TiB), e.g. 1G (required)")
	f.IntVar(&o.vcpus, "vcpus", agent.DefaultVCPUs, "`N` virtual CPUs")
	f.StringVar(&o.memory, "memory", "256M", "guest memory `SIZE`: bytes or with a unit, e.g. 512M, 2G")
	f.StringVar(&o.virtType, "virt-type", defaultVirtType(), "the libvirt domain `TYPE`, kvm or qemu (TCG), as nova's [libvirt] virt_type; $BASEFS_VIRT_TYPE sets the default")
	f.StringVar(&o.kernel, "kernel", "", "boot the kernel at `PATH` directly (without it: BIOS boot from the disk)")
	f.StringVar(&o.initrd, "initrd", "", "the initrd at `PATH` for --kernel")
	f.StringVar(&o.cmdline, "cmdline", "", "the kernel command line `S` for --kernel (default \""+agent.DefaultCmdline+"\")")
	f.StringVar(&o.cacheMode, "cache-mode", agent.DefaultCacheMode, "the disk cache `MODE`: none, writethrough, writeback, directsync, unsafe or default")
	f.StringVar(&o.base, "base", agent.DefaultBase, "the basefs `MOUNTPOINT` (the daemon is found through it)")
	o.hostOptions.AddFlags(f)
}

func init() {
	register("spawn", command{
		summary: "boot an instance: qcow2 overlay on the image's view, libvirt domain, started",
		usage: "spawn --instance ID --image REF --disk-size SIZE [--vcpus N] [--memory SIZE] [--virt-type kvm|qemu]\n" +
			"         [--kernel PATH [--initrd PATH] [--cmdline S]] [--cache-mode M] [--instances-path DIR]\n" +
			"         [--base MOUNTPOINT] [--connect URI] [--json]",
		run: runSpawn,
	})
}

func runSpawn(ctx context.Context, args []string, out, errOut io.Writer) error {
	var o spawnOptions
	f := newFlags("spawn", errOut)
	o.AddFlags(f)
	if err := parse(f, args); err != nil {
		return err
	}
	if err := checkInstance(o.id); err != nil {
		return err
	}
	if o.image == "" {
		return usageError{Msg: "--image is required"}
	}
	if _, err := agent.ParseImageRef(o.image); err != nil {
		return usageError{Msg: "--image: " + err.Error()}
	}
	if o.diskSize == "" {
		return usageError{Msg: "--disk-size is required"}
	}
	disk, err := agent.ParseSize(o.diskSize)
	if err != nil {
		return usageError{Msg: "--disk-size: " + err.Error()}
	}
	if disk == 0 || disk%512 != 0 {
		return usageError{Msg: fmt.Sprintf("--disk-size %s: must be a positive multiple of 512 bytes", o.diskSize)}
	}
	mem, err := agent.ParseSize(o.memory)
	if err != nil {
		return usageError{Msg: "--memory: " + err.Error()}
	}
	if mem < agent.MiB || mem%agent.KiB != 0 {
		return usageError{Msg: fmt.Sprintf("--memory %s: must be at least 1M and a multiple of 1K", o.memory)}
	}
	if o.vcpus < 1 {
		return usageError{Msg: fmt.Sprintf("--vcpus %d: must be at least 1", o.vcpus)}
	}
	if o.kernel == "" && (o.initrd != "" || o.cmdline != "") {
		return usageError{Msg: "--initrd and --cmdline need --kernel"}
	}
	if !slices.Contains(agent.VirtTypes, o.virtType) {
		return usageError{Msg: fmt.Sprintf("--virt-type %q: want one of %s", o.virtType, strings.Join(agent.VirtTypes, ", "))}
	}
	if !slices.Contains(agent.CacheModes, o.cacheMode) {
		return usageError{Msg: fmt.Sprintf("--cache-mode %q: want one of %s", o.cacheMode, strings.Join(agent.CacheModes, ", "))}
	}
	res, err := o.agent(errOut).Spawn(ctx, agent.SpawnRequest{
		ID: o.id, Image: o.image, DiskSize: disk, VCPUs: o.vcpus, Memory: mem, VirtType: o.virtType,
		Kernel: o.kernel, Initrd: o.initrd, Cmdline: o.cmdline, CacheMode: o.cacheMode, Base: o.base,
	})
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(out, res)
	}
	_, err = fmt.Fprintf(out, "spawned %s in %.2f s: %s\n", res.ID, res.Seconds.Total, line(&res.Instance))
	return err
}
