package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/cmd/internal/cli"
)

type instanceOptions struct {
	hostOptions
	id string
}

func (o *instanceOptions) AddFlags(f *pflag.FlagSet) {
	instanceOption(f, &o.id)
	o.hostOptions.AddFlags(f)
}

func init() {
	register("terminate", command{
		summary: "destroy and undefine an instance's domain, remove its directory (the base stays)",
		usage:   "terminate --instance ID [--instances-path DIR] [--connect URI] [--json]",
		run:     runTerminate,
	})
	register("show", command{
		summary: "show an instance: domain state, image, view, overlay and its allocated size",
		usage:   "show --instance ID [--instances-path DIR] [--connect URI] [--json]",
		run:     runShow,
	})
	register("list", command{
		summary: "list the agent's instances, one line each",
		usage:   "list [--instances-path DIR] [--connect URI] [--json]",
		run:     runList,
	})
}

func runTerminate(ctx context.Context, args []string, out, errOut io.Writer) error {
	var o instanceOptions
	f := newFlags("terminate", errOut)
	o.AddFlags(f)
	if err := parse(f, args); err != nil {
		return err
	}
	if err := checkInstance(o.id); err != nil {
		return err
	}
	res, err := o.agent(errOut).Terminate(ctx, o.id)
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(out, res)
	}
	_, err = fmt.Fprintln(out, res.Message)
	return err
}

func runShow(ctx context.Context, args []string, out, errOut io.Writer) error {
	var o instanceOptions
	f := newFlags("show", errOut)
	o.AddFlags(f)
	if err := parse(f, args); err != nil {
		return err
	}
	if err := checkInstance(o.id); err != nil {
		return err
	}
	inst, err := o.agent(errOut).Show(ctx, o.id)
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(out, inst)
	}
	_, err = fmt.Fprintln(out, line(inst))
	return err
}

func runList(ctx context.Context, args []string, out, errOut io.Writer) error {
	var o hostOptions
	f := newFlags("list", errOut)
	o.AddFlags(f)
	if err := parse(f, args); err != nil {
		return err
	}
	list, err := o.agent(errOut).List(ctx)
	if err != nil {
		return err
	}
	if o.json {
		return cli.PrintJSON(out, list)
	}
	if len(list) == 0 {
		_, err = fmt.Fprintf(out, "no instances (in %s, or as basefs-* domains at %s)\n", o.instancesPath, o.connect)
		return err
	}
	for i := range list {
		if _, err := fmt.Fprintln(out, line(&list[i])); err != nil {
			return err
		}
	}
	return nil
}
