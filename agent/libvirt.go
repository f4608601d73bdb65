package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/basefs/basefs/chunkstore/child"
)

// rollback undoes a failed spawn: it stops and undefines the domain it defined (if any) and
// removes the instance directory.
func (a *Agent) rollback(dom *libvirt.Domain, started bool, dir string) error {
	var errs []error
	if dom != nil {
		if started {
			if err := dom.Destroy(); err != nil && !isVirt(err, libvirt.ERR_OPERATION_INVALID) && !isVirt(err, libvirt.ERR_NO_DOMAIN) {
				errs = append(errs, fmt.Errorf("destroy: %w", virt(err)))
			}
		}
		if err := undefine(dom); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	a.log.Info("spawn rolled back", "dir", dir, "errors", len(errs))
	return errors.Join(errs...)
}

func undefine(dom *libvirt.Domain) error {
	err := dom.UndefineFlags(libvirt.DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.DOMAIN_UNDEFINE_SNAPSHOTS_METADATA |
		libvirt.DOMAIN_UNDEFINE_CHECKPOINTS_METADATA | libvirt.DOMAIN_UNDEFINE_NVRAM)
	if err != nil && !isVirt(err, libvirt.ERR_NO_DOMAIN) {
		return fmt.Errorf("undefine: %w", virt(err))
	}
	return nil
}

// waitRunning waits until libvirt reports a started domain running. A guest that has already
// powered off by itself (fast guests do) counts as started; one that crashed or failed does
// not.
func (a *Agent) waitRunning(ctx context.Context, dom *libvirt.Domain) (string, error) {
	deadline := time.Now().Add(a.cfg.StartTimeout)
	for {
		s, reason, err := dom.GetState()
		if err != nil {
			return "", virt(err)
		}
		switch s {
		case libvirt.DOMAIN_RUNNING, libvirt.DOMAIN_BLOCKED:
			return stateName(s), nil
		case libvirt.DOMAIN_SHUTOFF:
			switch libvirt.DomainShutoffReason(reason) {
			case libvirt.DOMAIN_SHUTOFF_SHUTDOWN: // the guest powered off by itself
				return stateName(s), nil
			case libvirt.DOMAIN_SHUTOFF_DESTROYED:
				return "", errors.New("the domain was destroyed while it started (by a terminate?)")
			}
			return "", fmt.Errorf("the domain stopped right after it started (shutoff reason %d): see its console log and /var/log/libvirt/qemu/", reason)
		case libvirt.DOMAIN_CRASHED:
			return "", errors.New("the domain crashed right after it started: see its console log and /var/log/libvirt/qemu/")
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("not running after %s (state %s)", a.cfg.StartTimeout, stateName(s))
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// createOverlay creates the instance disk: a qcow2 overlay of size bytes on the raw view.
func (a *Agent) createOverlay(ctx context.Context, disk, backing string, size int64) error {
	_, err := child.Run(ctx, child.Limits{Timeout: time.Minute}, a.cfg.QemuImg, "create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", disk, fmt.Sprint(size))
	if err != nil {
		return fmt.Errorf("qemu-img create %s on %s: %w", disk, backing, err)
	}
	return nil
}

// connect opens the libvirt connection.
func (a *Agent) connect() (*libvirt.Connect, error) {
	conn, err := libvirt.NewConnect(a.cfg.Connect)
	if err != nil {
		return nil, fmt.Errorf("libvirt at %s: %w (is libvirtd running? scripts/setup-host.sh starts it)", a.cfg.Connect, virt(err))
	}
	return conn, nil
}

func stateName(s libvirt.DomainState) string {
	switch s {
	case libvirt.DOMAIN_NOSTATE:
		return "nostate"
	case libvirt.DOMAIN_RUNNING:
		return "running"
	case libvirt.DOMAIN_BLOCKED:
		return "blocked"
	case libvirt.DOMAIN_PAUSED:
		return "paused"
	case libvirt.DOMAIN_SHUTDOWN:
		return "shutdown"
	case libvirt.DOMAIN_SHUTOFF:
		return "shutoff"
	case libvirt.DOMAIN_CRASHED:
		return "crashed"
	case libvirt.DOMAIN_PMSUSPENDED:
		return "pmsuspended"
	}
	return fmt.Sprintf("state-%d", s)
}

// StateNoDomain is the state of an instance directory without a domain (a spawn in progress,
// or the leftovers of a host crash; terminate removes it).
const StateNoDomain = "no-domain"

// allocated returns the bytes the file occupies on the host (0 if it is missing).
func allocated(path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}
