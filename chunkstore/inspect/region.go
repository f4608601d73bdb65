package inspect

import (
	"errors"
	"fmt"
	"io"
)

// step is nova's read size: its inspectors see the file in 512-byte chunks, and where a
// region starts relative to them decides what the region captures.
const step = 512

// region is a byte range an inspector wants (nova's CaptureRegion). Its length is bounded
// by the inspector that made it, never taken from the file unchecked.
type region struct {
	off, length int64
	data        []byte
}

func (r *region) complete() bool { return int64(len(r.data)) == r.length }

// capture offers chunk, which ends at file position pos, to r — with nova's rule exactly,
// including its quirk: a region made after its start was passed captures from the chunk at
// hand onwards (so a hostile file cannot make two inspectors disagree with nova's).
func (r *region) capture(chunk []byte, pos int64) {
	start := pos - int64(len(chunk))
	if (start <= r.off && r.off <= pos) || (r.off <= start && start <= r.off+r.length) {
		gap := int64(0)
		if start < r.off {
			gap = r.off - start
		}
		r.data = append(r.data, chunk[gap:]...)
		if int64(len(r.data)) > r.length {
			r.data = r.data[:r.length]
		}
	}
}

// wants reports whether a chunk starting at start could be captured by r.
func (r *region) wants(start int64) bool {
	return !r.complete() && start >= r.off-step && start <= r.off+r.length
}

// errNoMatch is an inspector's "this is not my format" (nova's ImageFormatError while
// reading): the inspector drops out of detection.
var errNoMatch = errors.New("not this format")

// inspector is one format's reader (nova's FileInspector subclasses).
type inspector interface {
	name() string
	regions() *regionSet
	// after runs after each chunk (nova's post_process); it may add regions.
	after() error
	match() bool
	// safety returns why the image is unsafe, or nil.
	safety() error
}

// regionSet holds an inspector's regions in the order they were made.
type regionSet struct {
	names []string
	byKey map[string]*region
}

func (s *regionSet) add(name string, off, length int64) {
	if s.byKey == nil {
		s.byKey = make(map[string]*region)
	}
	s.names = append(s.names, name)
	s.byKey[name] = &region{off: off, length: length}
}

func (s *regionSet) get(name string) *region { return s.byKey[name] }
func (s *regionSet) has(name string) bool    { return s.byKey[name] != nil }

func (s *regionSet) complete() bool {
	for _, n := range s.names {
		if !s.byKey[n].complete() {
			return false
		}
	}
	return true
}

// eat is nova's eat_chunk: chunk ends at pos.
func eat(in inspector, chunk []byte, pos int64) error {
	rs := in.regions()
	before := len(rs.names)
	for _, n := range rs.names {
		if r := rs.byKey[n]; !r.complete() {
			r.capture(chunk, pos)
		}
	}
	if err := in.after(); err != nil {
		return err
	}
	for _, n := range rs.names[before:] {
		if r := rs.byKey[n]; !r.complete() {
			r.capture(chunk, pos)
		}
	}
	return nil
}

// detect is nova's detect_file_format over r (size bytes), reading only the chunks some
// inspector can still capture.
func detect(r io.ReaderAt, size int64) (inspector, error) {
	live := allInspectors()
	var found []inspector
	raw := live[0]
	buf := make([]byte, step)
	pos := int64(0)
	for pos < size {
		next := nextWanted(live, pos)
		if next < 0 || next >= size {
			break
		}
		n := min(int64(step), size-next)
		if _, err := r.ReadAt(buf[:n], next); err != nil && !(errors.Is(err, io.EOF)) {
			return nil, fmt.Errorf("read at %d: %w", next, err)
		}
		pos = next + n
		kept := live[:0]
		for _, in := range live {
			if err := eat(in, buf[:n], pos); err != nil {
				if errors.Is(err, errNoMatch) {
					continue
				}
				return nil, err
			}
			if in != raw && in.match() && in.regions().complete() {
				found = append(found, in)
				continue
			}
			kept = append(kept, in)
		}
		live = kept
		if allComplete(live) {
			break
		}
	}
	switch {
	case len(found) == 0:
		return raw, nil
	case len(found) == 1:
		return found[0], nil
	case len(found) == 2 && hybridISO(found):
		if found[0].name() == "iso" {
			return found[0], nil
		}
		return found[1], nil
	}
	names := make([]string, len(found))
	for i, in := range found {
		names[i] = in.name()
	}
	return nil, &Refusal{Reason: fmt.Sprintf("more than one format detected (%v): one header hidden in another", names)}
}

func hybridISO(found []inspector) bool {
	a, b := found[0].name(), found[1].name()
	return (a == "iso" && b == "gpt") || (a == "gpt" && b == "iso")
}

func allComplete(live []inspector) bool {
	for _, in := range live {
		if !in.regions().complete() {
			return false
		}
	}
	return true
}

// nextWanted returns the first chunk start at or after pos that a live inspector's
// incomplete region could capture, or -1. Chunks nobody wants change nothing in nova's loop
// (its post-processing depends only on captured bytes), so skipping them keeps its verdict.
func nextWanted(live []inspector, pos int64) int64 {
	best := int64(-1)
	for _, in := range live {
		rs := in.regions()
		for _, n := range rs.names {
			r := rs.byKey[n]
			if r.complete() {
				continue
			}
			s := max(pos, r.off-step)
			s = (s + step - 1) / step * step
			if !r.wants(s) {
				continue // passed: it can never complete (nova reads on and sees nothing new)
			}
			if best < 0 || s < best {
				best = s
			}
		}
	}
	return best
}
