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

	"github.com/hanwen/go-fuse/v2/fuse"
)

// journal records the requests that are not idempotent (create, rename, unlink, link in the
// writable area; unlink of an image) before they are applied, keyed by the kernel's request
// id. A request the kernel or the supervisor resends after the process that held it died
// carries the same id: the process that gets it finds it in the journal and answers from
// the state (the file exists: it was created) instead of applying it twice (EEXIST).
//
// A record only has to outlive the process, not the machine (a crash of the machine ends
// the FUSE connection too), so it is a plain append, never synced. The journal belongs to
// one FUSE connection: the supervisor removes it before mounting (ResetJournal).
type journal struct {
	mu    sync.Mutex
	path  string
	f     *os.File
	seen  map[uint64]bool
	order []uint64
}

// uniqueResend is the bit the kernel sets in the id of a request it resends
// (FUSE_NOTIFY_RESEND); the id is otherwise the same.
const uniqueResend = 1 << 63

// journalKeep bounds the journal: only requests in flight when a process died are resent,
// and far fewer than this many are ever in flight.
const journalKeep = 4096

func openJournal(path string) (*journal, error) {
	j := &journal{path: path, seen: map[uint64]bool{}}
	if b, err := os.ReadFile(path); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(b)))
		for sc.Scan() {
			id, _, _ := strings.Cut(sc.Text(), " ")
			u, err := strconv.ParseUint(id, 10, 64)
			if err != nil {
				continue // a torn last line
			}
			if !j.seen[u] {
				j.seen[u] = true
				j.order = append(j.order, u)
			}
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("request journal %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("request journal %s: %w", path, err)
	}
	j.f = f
	return j, nil
}

// ResetJournal removes the request journal of the writable area at dir (see journal): a new
// FUSE connection starts its request ids again.
func ResetJournal(dir string) error {
	if err := os.Remove(dir + ".journal"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// begin records request unique (op, for people reading the file) and reports whether it
// was recorded before: then it is a resend of a request another process may have applied.
func (j *journal) begin(unique uint64, op string) (resent bool, err error) {
	unique &^= uniqueResend
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.seen[unique] {
		return true, nil
	}
	if _, err := fmt.Fprintf(j.f, "%d %s\n", unique, op); err != nil {
		return false, fmt.Errorf("request journal %s: %w", j.path, err)
	}
	j.seen[unique] = true
	j.order = append(j.order, unique)
	if len(j.order) > 2*journalKeep {
		j.compactLocked()
	}
	return false, nil
}

// request journals request h (op, for people reading the file) and reports whether it is a
// resend; a journal that cannot be written fails the request (EIO, logged). A nil journal (no
// writable area) records nothing: no request is a resend.
func (j *journal) request(h *fuse.InHeader, op string, logger *slog.Logger) (bool, fuse.Status) {
	if j == nil {
		return false, fuse.OK
	}
	resent, err := j.begin(h.Unique, op)
	if err != nil {
		logger.Error("writable area: cannot journal a request", "op", op, "err", err)
		return false, fuse.EIO
	}
	return resent, fuse.OK
}

// compactLocked rewrites the journal with its newest journalKeep records.
func (j *journal) compactLocked() {
	keep := j.order[len(j.order)-journalKeep:]
	var b strings.Builder
	for _, u := range keep {
		fmt.Fprintf(&b, "%d -\n", u)
	}
	tmp := j.path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		return
	}
	if err := os.Rename(tmp, j.path); err != nil {
		return
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	j.f.Close()
	j.f = f
	clear(j.seen)
	for _, u := range keep {
		j.seen[u] = true
	}
	j.order = append([]uint64(nil), keep...)
}
