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

// nodeTable maps node ids to image views (imageNode). With a log file, every id is appended ("<ino> <digest>
// <viewGiB>") before the kernel learns it, and the table is loaded from the log at start, so
// a process taking over a live connection knows every id the kernel holds. The log holds one
// line per view ever looked up on this state (images × sizes), so it stays small.
type nodeTable struct {
	tree  *imageTree // of every node
	mu    sync.RWMutex
	m     map[uint64]*imageNode
	views map[chunkstore.Digest]int // resized views recorded per image
	log   *os.File
}

// MaxViews bounds the resized views (`<digest>_<N>`) one image may have in the node table
// (and its log): nova asks for one per flavor disk size, so a few; a caller looking up every
// N would otherwise grow the table and the log without bound. A lookup past it answers EMLINK.
const MaxViews = 64

// errTooManyViews: the image has MaxViews resized views already.
var errTooManyViews = errors.New("too many resized views of one image")

func newNodeTable(tree *imageTree, path string, logger *slog.Logger) *nodeTable {
	t := &nodeTable{tree: tree, m: make(map[uint64]*imageNode), views: make(map[chunkstore.Digest]int)}
	if path == "" {
		return t
	}
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			ino, d, viewGiB, err := parseNodeLine(sc.Text())
			if err != nil {
				logger.Warn("node log: skipping a bad line", "path", path, "err", err)
				continue
			}
			if _, dup := t.m[ino]; !dup && viewGiB > 0 {
				t.views[d]++
			}
			t.m[ino] = t.node(d, viewGiB)
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

// parseNodeLine parses a line of the node log: "<ino> <digest> <viewGiB>".
func parseNodeLine(s string) (ino uint64, d chunkstore.Digest, viewGiB int64, err error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, d, 0, fmt.Errorf("%q: want 3 fields", s)
	}
	if ino, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return 0, d, 0, err
	}
	if d, err = chunkstore.ParseDigest(f[1]); err != nil {
		return 0, d, 0, err
	}
	viewGiB, err = strconv.ParseInt(f[2], 10, 64)
	if err != nil || viewGiB < 0 || viewGiB > maxViewGiB {
		return 0, d, 0, fmt.Errorf("%q: bad view size", s)
	}
	if inodeNumber(d, viewGiB) != ino {
		return 0, d, 0, fmt.Errorf("%q: node id does not match its view", s)
	}
	return ino, d, viewGiB, nil
}

// node makes the node of a view of image d.
func (t *nodeTable) node(d chunkstore.Digest, viewGiB int64) *imageNode {
	return &imageNode{t: t.tree, digest: d, viewGiB: viewGiB}
}

// get returns the node recorded under ino (nil: none).
func (t *nodeTable) get(ino uint64) *imageNode {
	t.mu.RLock()
	n := t.m[ino]
	t.mu.RUnlock()
	return n
}

// add records ino, the view viewGiB of image d; it is durable in the log (against a crash of
// this process) on return.
func (t *nodeTable) add(ino uint64, d chunkstore.Digest, viewGiB int64) error {
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
	if viewGiB > 0 && t.views[d] >= MaxViews {
		return fmt.Errorf("image %s has %d resized views: %w", d.Short(), MaxViews, errTooManyViews)
	}
	if t.log != nil {
		if _, err := fmt.Fprintf(t.log, "%d %s %d\n", ino, d, viewGiB); err != nil {
			return err
		}
	}
	t.m[ino] = t.node(d, viewGiB)
	if viewGiB > 0 {
		t.views[d]++
	}
	return nil
}

// alias makes node id ino (a writable file just adopted as an image) stand for image d in
// this process, so the kernel's node for the renamed file reads the image until it looks the
// name up again.
func (t *nodeTable) alias(ino uint64, d chunkstore.Digest) {
	n := t.node(d, 0)
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
