package fs

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/basefs/basefs/chunkstore"
)

// node is what a node id stands for: a view of an image.
type node struct {
	digest  chunkstore.Digest
	viewGiB int64
}

// nodeTable maps node ids to views. With a log file, every id is appended ("<ino> <digest>
// <viewGiB>") before the kernel learns it, and the table is loaded from the log at start, so
// a process taking over a live connection knows every id the kernel holds. The log holds one
// line per view ever looked up on this state (images × sizes), so it stays small.
type nodeTable struct {
	mu    sync.RWMutex
	m     map[uint64]node
	views map[chunkstore.Digest]int // resized views recorded per image
	log   *os.File
}

// MaxViews bounds the resized views (`<digest>_<N>`) one image may have in the node table
// (and its log): nova asks for one per flavor disk size, so a few; a caller looking up every
// N would otherwise grow the table and the log without bound. A lookup past it answers EMLINK.
const MaxViews = 64

// errTooManyViews: the image has MaxViews resized views already.
var errTooManyViews = errors.New("too many resized views of one image")

func newNodeTable(path string, logger *slog.Logger) *nodeTable {
	t := &nodeTable{m: make(map[uint64]node), views: make(map[chunkstore.Digest]int)}
	if path == "" {
		return t
	}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ino, n, err := parseNodeLine(sc.Text())
			if err != nil {
				logger.Warn("node log: skipping a bad line", "path", path, "err", err)
				continue
			}
			if _, dup := t.m[ino]; !dup && n.viewGiB > 0 {
				t.views[n.digest]++
			}
			t.m[ino] = n
		}
		f.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		logger.Error("node log unreadable", "path", path, "err", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		logger.Error("node log unwritable: node ids will not survive a restart", "path", path, "err", err)
		return t
	}
	t.log = f
	return t
}

func parseNodeLine(s string) (uint64, node, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, node{}, fmt.Errorf("%q: want 3 fields", s)
	}
	ino, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0, node{}, err
	}
	d, err := chunkstore.ParseDigest(f[1])
	if err != nil {
		return 0, node{}, err
	}
	v, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || v < 0 || v > maxViewGiB {
		return 0, node{}, fmt.Errorf("%q: bad view size", s)
	}
	if inodeNumber(d, v) != ino {
		return 0, node{}, fmt.Errorf("%q: node id does not match its view", s)
	}
	return ino, node{digest: d, viewGiB: v}, nil
}

func (t *nodeTable) get(ino uint64) (node, bool) {
	t.mu.RLock()
	n, ok := t.m[ino]
	t.mu.RUnlock()
	return n, ok
}

// add records ino; it is durable in the log (against a crash of this process) on return.
func (t *nodeTable) add(ino uint64, n node) error {
	t.mu.RLock()
	_, ok := t.m[ino]
	t.mu.RUnlock()
	if ok {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[ino]; ok {
		return nil
	}
	if n.viewGiB > 0 && t.views[n.digest] >= MaxViews {
		return fmt.Errorf("image %s has %d resized views: %w", n.digest.Short(), MaxViews, errTooManyViews)
	}
	if t.log != nil {
		if _, err := fmt.Fprintf(t.log, "%d %s %d\n", ino, n.digest, n.viewGiB); err != nil {
			return err
		}
	}
	t.m[ino] = n
	if n.viewGiB > 0 {
		t.views[n.digest]++
	}
	return nil
}

// alias makes node id ino (a writable file just adopted as an image) stand for image node
// n in this process, so the kernel's node for the renamed file reads the image until it looks
// the name up again.
func (t *nodeTable) alias(ino uint64, n node) {
	t.mu.Lock()
	t.m[ino] = n
	t.mu.Unlock()
}

// ofImage returns the node ids of image d's views the table holds.
func (t *nodeTable) ofImage(d chunkstore.Digest) []uint64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []uint64
	for ino, n := range t.m {
		if n.digest == d {
			out = append(out, ino)
		}
	}
	return out
}
