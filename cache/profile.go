package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/basefs/basefs/chunkstore"
	"github.com/basefs/basefs/chunkstore/local"
)

// A boot profile is the order in which an image's chunks were first read during the first
// seconds after it was first used — what a booting guest needs first. It is kept beside the
// manifest (<state>/profiles/<digest>) and published with it; a later cold use of the image
// on any host fetches those chunks first, in that order, before the guest asks.
//
// Encoding (strict, canonical):
//
//	basefs-profile 1
//	chunks <n>
//	<chunk index>            n lines, decimal, each < the image's chunk count, no repeats
const profileMagic = "basefs-profile 1\n"

// EncodeProfile returns the canonical encoding of a profile.
func EncodeProfile(idx []int) []byte {
	var b bytes.Buffer
	b.WriteString(profileMagic)
	fmt.Fprintf(&b, "chunks %d\n", len(idx))
	for _, i := range idx {
		b.WriteString(strconv.Itoa(i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// ParseProfile parses a profile for an image of nchunks chunks.
func ParseProfile(b []byte, nchunks int) ([]int, error) {
	rest, ok := bytes.CutPrefix(b, []byte(profileMagic))
	if !ok {
		return nil, errors.New("profile: not a basefs profile (or an unknown version)")
	}
	line, rest, ok := bytes.Cut(rest, []byte("\n"))
	n, err := parseDecimal(bytes.TrimPrefix(line, []byte("chunks ")))
	if !ok || !bytes.HasPrefix(line, []byte("chunks ")) || err != nil || n > nchunks {
		return nil, fmt.Errorf("profile: bad chunk count line %q", truncateBytes(line))
	}
	seen := make(map[int]bool, n)
	out := make([]int, 0, n)
	for range n {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		i, err := parseDecimal(line)
		if !ok || err != nil || i >= nchunks || seen[i] {
			return nil, fmt.Errorf("profile: bad chunk index %q", truncateBytes(line))
		}
		seen[i] = true
		out = append(out, i)
	}
	if len(rest) != 0 {
		return nil, errors.New("profile: trailing bytes")
	}
	return out, nil
}

func parseDecimal(b []byte) (int, error) {
	if len(b) == 0 || len(b) > 10 || (b[0] == '0' && len(b) > 1) {
		return 0, errors.New("not a canonical decimal")
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errors.New("not a canonical decimal")
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}

func truncateBytes(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "..."
	}
	return string(b)
}

// ProfilePath is where image d's boot profile is kept in a state or published directory.
func ProfilePath(root string, d chunkstore.Digest) string {
	return filepath.Join(root, "profiles", d.String())
}

// readProfile reads image d's profile from dir (a state or published layout).
func readProfile(root string, d chunkstore.Digest, nchunks int) ([]int, error) {
	b, err := os.ReadFile(ProfilePath(root, d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("profile %s: %w", d.Short(), chunkstore.ErrNotFound)
		}
		return nil, err
	}
	return ParseProfile(b, nchunks)
}

// writeProfile writes a profile atomically (temp file, fsync, rename).
func writeProfile(root string, d chunkstore.Digest, idx []int) error {
	p := ProfilePath(root, d)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(EncodeProfile(idx))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// profileRecorder notes the order of first reads of an image's chunks during a window that
// starts at the first read.
type profileRecorder struct {
	window time.Duration
	done   func([]int)

	mu    sync.Mutex
	start time.Time
	seen  map[int]bool
	order []int
	over  bool
}

func newProfileRecorder(window time.Duration, done func([]int)) *profileRecorder {
	return &profileRecorder{window: window, done: done, seen: make(map[int]bool)}
}

func (r *profileRecorder) record(i int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.over {
		return
	}
	if r.start.IsZero() {
		r.start = time.Now()
		time.AfterFunc(r.window, r.finish)
	}
	if !r.seen[i] {
		r.seen[i] = true
		r.order = append(r.order, i)
	}
}

func (r *profileRecorder) finish() {
	r.mu.Lock()
	r.over = true
	order := r.order
	r.mu.Unlock()
	r.done(order)
}

// ProfileGetter is implemented by origins that can serve boot profiles.
type ProfileGetter interface {
	GetProfile(ctx context.Context, d chunkstore.Digest, nchunks int) ([]int, error)
}

// ProfileStore is where boot profiles are found and kept: a local state directory (the host's
// or a dir:// origin's) or a shared tier (an s3:// origin). Profiles is the one place that routes them.
type ProfileStore interface {
	ProfileGetter
	PutProfile(ctx context.Context, d chunkstore.Digest, idx []int) error
}

// dirProfiles keeps profiles in a state directory's profiles/.
type dirProfiles struct{ root string }

func (p dirProfiles) GetProfile(_ context.Context, d chunkstore.Digest, nchunks int) ([]int, error) {
	return readProfile(p.root, d, nchunks)
}

func (p dirProfiles) PutProfile(_ context.Context, d chunkstore.Digest, idx []int) error {
	return writeProfile(p.root, d, idx)
}

// Profiles returns the profile store of a store or origin, if it keeps profiles.
func Profiles(s any) (ProfileStore, bool) {
	switch s := s.(type) {
	case *local.Store:
		return dirProfiles{s.Root()}, true
	case ProfileStore:
		return s, true
	case profileBytes:
		return tierProfiles{s}, true
	}
	return nil, false
}
