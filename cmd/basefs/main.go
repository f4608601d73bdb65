// Command basefs is the basefs host daemon (`basefs mount`) and its admin commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cmd/internal/cli"
)

// version names the build (set with -ldflags "-X main.version=…"); status reports it.
var version = "dev"

// defaultState is where the host keeps chunks and manifests unless --state says otherwise.
const defaultState = "/var/lib/basefs"

type command struct {
	summary string
	usage   string
	run     func(ctx context.Context, args []string) error
	hidden  bool // not listed in the usage (internal)
}

var commands = map[string]command{}

func register(name string, c command) { commands[name] = c }

// usageError is a mistake in the command line: the usage is printed and the exit status is 2.
type usageError = cli.UsageError

func usage() {
	fmt.Fprintf(os.Stderr, "basefs — content-addressed, lazily fetched, verified VM base images\n\nUsage:\n")
	names := make([]string, 0, len(commands))
	for n, c := range commands {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  basefs %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'basefs COMMAND --help' for a command's flags.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "basefs: unknown command %q\n\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := c.run(ctx, os.Args[2:])
	stop()
	if err == nil {
		return
	}
	if errors.Is(err, pflag.ErrHelp) {
		return
	}
	fmt.Fprintf(os.Stderr, "basefs %s: %v\n", os.Args[1], err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "usage: basefs %s\n", c.usage)
		os.Exit(2)
	}
	os.Exit(1)
}

// newFlags returns a flag set for a subcommand that reports errors instead of exiting.
func newFlags(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("basefs "+name, pflag.ContinueOnError)
	fs.SortFlags = false
	return fs
}
