package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/chunkstore/child"
	"github.com/basefs/basefs/fs"
)

// LoopbackCommand is the first argument with which the read scenario starts the running
// executable again as the server of its FUSE baseline (`<executable> serve-loopback DIR
// MOUNTPOINT`). A program that calls Run hands such an invocation to ServeLoopback before
// anything else (cmd/basefs-bench does).
const LoopbackCommand = "serve-loopback"

// loopbackReady is the line the loopback server prints once its mount serves.
const loopbackReady = "serving"

// ServeLoopback is the loopback baseline's server process: go-fuse's loopback file system
// over dir, mounted at mnt with basefs's own mount options (fs.MountOptions), until SIGTERM
// or SIGINT, when it unmounts. Two things make it measure FUSE alone:
//   - no passthrough: its file handles hide their descriptor from go-fuse, so the kernel
//     sends every read across FUSE to this process, as it does to basefs;
//   - the backing file is opened without O_DIRECT, whatever the reader asked, so reads of
//     it come from the host's page cache (as basefs's chunk objects do) and not from the
//     disk. A reader's O_DIRECT still bypasses the FUSE file's own page cache in the kernel.
//
// It prints loopbackReady on stdout once the mount serves and returns the exit status.
func ServeLoopback(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 {
		fmt.Fprintf(stderr, "%s: want DIR MOUNTPOINT\n", LoopbackCommand)
		return 2
	}
	srv, err := mountLoopback(args[0], args[1])
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", LoopbackCommand, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	gone := make(chan struct{})
	go func() { srv.Wait(); close(gone) }()
	fmt.Fprintln(stdout, loopbackReady)
	select {
	case <-ctx.Done():
		// Unmount and exit, not srv.Unmount: that waits until the kernel ends the connection,
		// which it does not while a copy of the mount lives on in another mount namespace (a
		// guest's qemu that libvirt started meanwhile has one). Exiting closes /dev/fuse, which
		// ends the connection everywhere.
		if err := unix.Unmount(args[1], 0); err != nil {
			fmt.Fprintf(stderr, "%s: unmount %s: %v; detaching it\n", LoopbackCommand, args[1], err)
			unix.Unmount(args[1], unix.MNT_DETACH)
			return 1
		}
	case <-gone:
		fmt.Fprintf(stderr, "%s: %s was unmounted from outside\n", LoopbackCommand, args[1])
		return 1
	}
	return 0
}

// mountLoopback mounts the page-cached loopback (ServeLoopback) of dir at mnt.
func mountLoopback(dir, mnt string) (*fuse.Server, error) {
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		return nil, err
	}
	mo := fs.MountOptions(false)
	mo.FsName, mo.Name = "loopback", "loopback"
	srv, err := gofs.Mount(mnt, &pageCacheNode{root.(*gofs.LoopbackNode)}, &gofs.Options{MountOptions: *mo})
	if err != nil {
		return nil, fmt.Errorf("go-fuse loopback mount of %s at %s: %w", dir, mnt, err)
	}
	return srv, nil
}

// pageCacheNode is a loopback node whose files are opened without O_DIRECT and served
// without passthrough.
type pageCacheNode struct{ *gofs.LoopbackNode }

var (
	_ gofs.NodeWrapChilder = (*pageCacheNode)(nil)
	_ gofs.NodeOpener      = (*pageCacheNode)(nil)
)

func (n *pageCacheNode) WrapChild(ctx context.Context, ops gofs.InodeEmbedder) gofs.InodeEmbedder {
	return &pageCacheNode{ops.(*gofs.LoopbackNode)}
}

func (n *pageCacheNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags&^syscall.O_DIRECT)
	if errno != 0 {
		return nil, 0, errno
	}
	return &pageCacheFile{fh.(*gofs.LoopbackFile)}, fuseFlags, 0
}

// pageCacheFile is a loopback file without passthrough.
type pageCacheFile struct{ *gofs.LoopbackFile }

// PassthroughFd shadows (*gofs.LoopbackFile).PassthroughFd: no backing file is handed to
// the kernel, so every read reaches this process.
func (f *pageCacheFile) PassthroughFd() (int, bool) { return -1, false }

// loopback is a running ServeLoopback process.
type loopback struct {
	cmd  *exec.Cmd
	mnt  string
	done chan struct{}
	err  strings.Builder // its stderr
}

// startLoopback runs `exe serve-loopback dir mnt` and returns once its mount serves.
func startLoopback(ctx context.Context, exe, dir, mnt string) (*loopback, error) {
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return nil, err
	}
	l := &loopback{mnt: mnt, done: make(chan struct{})}
	l.cmd = exec.Command(exe, LoopbackCommand, dir, mnt)
	l.cmd.Stderr = &l.err
	l.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := l.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", exe, LoopbackCommand, err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := sc.Scan() && sc.Text() == loopbackReady
		ready <- ok
		io.Copy(io.Discard, out)
		l.cmd.Wait()
		close(l.done)
	}()
	select {
	case ok := <-ready:
		if !ok {
			<-l.done
			return nil, fmt.Errorf("%s %s did not serve %s: %s", filepath.Base(exe), LoopbackCommand, mnt, tail(l.err.String(), 1500))
		}
		return l, nil
	case <-ctx.Done():
		l.Stop()
		return nil, ctx.Err()
	}
}

// PID is the loopback server's process id.
func (l *loopback) PID() int { return l.cmd.Process.Pid }

// Stop asks the server to unmount and exit (SIGTERM), kills it after 10 s, and detaches the
// mount if it is still there.
func (l *loopback) Stop() {
	child.Stop(l.cmd.Process, l.done, 10*time.Second)
	unix.Unmount(l.mnt, unix.MNT_DETACH) // only if the server could not
}

// mountOptionsOf returns the options of the mount at mnt as /proc/self/mountinfo shows them:
// the mount's, then the file system's (its type and source left out).
func mountOptionsOf(mnt string) (string, error) {
	abs, err := filepath.Abs(mnt)
	if err != nil {
		return "", err
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return "", err
	}
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	unescape := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	found := ""
	for _, line := range strings.Split(string(b), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - TYPE SOURCE SUPER-OPTIONS
		f := strings.Fields(line)
		sep := slices.Index(f, "-")
		if sep < 6 || len(f) < sep+4 || unescape.Replace(f[4]) != abs {
			continue
		}
		found = f[5] + " " + f[sep+3] // the last mount at mnt is the one seen there
	}
	if found == "" {
		return "", fmt.Errorf("%s is not a mount point (/proc/self/mountinfo)", mnt)
	}
	return found, nil
}
