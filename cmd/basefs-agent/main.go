// Command basefs-agent boots and tears down instances on top of a basefs `_base` mount: a
// qcow2 overlay per instance, a libvirt domain. The orchestrator invokes it once per
// operation; --json prints JSON for machines, otherwise one readable line (one per instance
// for list); the exit status is 0 only on success (1: the operation failed, 2: the command
// line is wrong). With --json a failure also prints {"error": "..."} on stdout.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/agent"
	"github.com/basefs/basefs/cmd/internal/cli"
	"github.com/basefs/basefs/cmd/internal/config"
)

type command struct {
	summary string
	usage   string
	run     func(ctx context.Context, args []string, out, errOut io.Writer) error
}

var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

// usageError is a mistake in the command line: the usage is printed and the exit status is 2.
type usageError = cli.UsageError

func usage(w io.Writer) {
	fmt.Fprintf(w, "basefs-agent — boot and tear down instances on a basefs _base (qcow2 overlays, libvirt)\n\nUsage:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  basefs-agent %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'basefs-agent COMMAND --help' for a command's flags.\n")
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run runs one command and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) < 1 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "basefs-agent: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := c.run(ctx, args[1:], stdout, stderr)
	if err == nil || errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	fmt.Fprintf(stderr, "basefs-agent %s: %v\n", args[0], err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "usage: basefs-agent %s\n", c.usage)
		return 2
	}
	if wantsJSON(args[1:]) {
		cli.PrintJSON(stdout, map[string]string{"error": err.Error()})
	}
	return 1
}

// wantsJSON reports whether --json was given (to report a failure as JSON too).
func wantsJSON(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "--json=true" {
			return true
		}
	}
	return false
}

// newFlags returns a flag set for a subcommand that reports errors instead of exiting; --help
// prints to errOut.
func newFlags(name string, errOut io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet("basefs-agent "+name, pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(errOut)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: basefs-agent %s\n\n%s", commands[name].usage, fs.FlagUsages())
	}
	return fs
}

// parse parses args over the configuration file's [agent] section (--config; the file basefs
// reads, /etc/basefs/basefs.conf, unless BASEFS_CONFIG names another): instances_path,
// connect, kernel_dir and verbose are settable there for every command; the command line
// wins. A flag error or a positional argument becomes a usageError.
func parse(fs *pflag.FlagSet, args []string) error {
	if _, err := config.Parse(fs, args, config.Options{Section: config.AgentSection, Keys: config.AgentKeys, DefaultPath: config.DefaultPath()}); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{Msg: fmt.Sprintf("unexpected argument %q (every value is given with a flag)", fs.Arg(0))}
	}
	return nil
}

// hostOptions say where the instances live and which libvirt to talk to.
type hostOptions struct {
	instancesPath string
	kernelDirs    []string
	connect       string
	json          bool
	verbose       bool
}

func (o *hostOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.instancesPath, "instances-path", agent.DefaultInstancesPath, "the `DIR` of the instance directories (nova's is /var/lib/nova/instances)")
	f.StringVar(&o.connect, "connect", agent.DefaultConnect, "the libvirt `URI`")
	f.StringArrayVar(&o.kernelDirs, "kernel-dir", []string{agent.DefaultKernelDir}, "a `DIR` whose files spawn --kernel and --initrd may name (repeatable; links out of it are refused)")
	f.BoolVar(&o.json, "json", false, "print JSON")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "log each step on stderr")
}

func (o *hostOptions) agent(errOut io.Writer) *agent.Agent {
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(errOut, &slog.HandlerOptions{Level: level}))
	return agent.New(agent.Config{InstancesPath: o.instancesPath, Connect: o.connect, KernelDirs: o.kernelDirs, Logger: log})
}

// instanceOption is --instance ID, required and checked.
func instanceOption(f *pflag.FlagSet, id *string) {
	f.StringVar(id, "instance", "", "the instance `ID`: 1-63 characters of A-Z a-z 0-9 . _ -, the first a letter or digit (required)")
}

func checkInstance(id string) error {
	if id == "" {
		return usageError{Msg: "--instance is required"}
	}
	if err := agent.ValidateID(id); err != nil {
		return usageError{Msg: "--instance: " + err.Error()}
	}
	return nil
}

// line formats an instance as one readable line.
func line(in *agent.Instance) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", in.ID, in.State)
	if in.Image.IsZero() {
		b.WriteString(" image ?")
	} else {
		fmt.Fprintf(&b, " image %s", in.Image.Short())
	}
	fmt.Fprintf(&b, " view %s disk %s (%s, %s allocated)", shortView(in.View), in.Disk, agent.FormatSize(in.DiskSize), agent.FormatSize(in.Allocated))
	if in.Domain != "" {
		fmt.Fprintf(&b, " domain %s", in.Domain)
	}
	return b.String()
}

// shortView shortens a view name's digest for people: 3f1c09a2b4c1…_1.
func shortView(v string) string {
	if len(v) < 64 {
		if v == "" {
			return "?"
		}
		return v
	}
	return v[:12] + "…" + v[64:]
}
