package bench

import (
	"bufio"
	"cmp"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/basefs/basefs/chunkstore"
)

// readTrace parses qemu's blk_co_preadv trace lines ("… offset N bytes M …") into extents.
func readTrace(path string) ([]extent, error) {
	xs, _, err := scanTrace(path)
	return xs, err
}

// scanTrace is readTrace that also returns each read's time in seconds from the line's
// "PID@SECONDS.MICROS:" prefix (qemu's -msg timestamp=on), NaN where the line has none.
func scanTrace(path string) ([]extent, []float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var xs []extent
	var ts []float64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || !strings.HasSuffix(fields[0], "blk_co_preadv") {
			continue
		}
		var x extent
		ok := 0
		for i := 1; i+1 < len(fields); i++ {
			switch fields[i] {
			case "offset":
				if v, err := strconv.ParseInt(fields[i+1], 10, 64); err == nil {
					x.Off, ok = v, ok+1
				}
			case "bytes":
				if v, err := strconv.ParseInt(fields[i+1], 10, 64); err == nil {
					x.Len, ok = v, ok+1
				}
			}
		}
		if ok == 2 && x.Len > 0 {
			xs = append(xs, x)
			t := math.NaN()
			if _, rest, found := strings.Cut(fields[0], "@"); found {
				if sec, _, found := strings.Cut(rest, ":"); found {
					if v, err := strconv.ParseFloat(sec, 64); err == nil {
						t = v
					}
				}
			}
			ts = append(ts, t)
		}
	}
	return xs, ts, sc.Err()
}

// granuleUse is what reading extents costs at a fetch granularity g (a chunk size): the
// g-aligned blocks they touch, less those that are all zeros in the image (holes: basefs never
// fetches them) and repeats of a block already counted (same content: one chunk).
type granuleUse struct {
	Granule int64
	Blocks  int64 // distinct touched blocks with data: one request each, fetched whole
	Bytes   int64 // their bytes (the last block clipped to the image)
	Stored  int64 // their stored form, as basefs stores a chunk (header + zstd when it saves ≥ 1/16): the bytes on the wire
}

// granuleCosts computes granuleUse for each granularity, reading the image to tell zero and
// repeated blocks and to encode each as a chunk object.
func granuleCosts(image string, size int64, xs []extent, granules []int64) ([]granuleUse, error) {
	f, err := os.Open(image)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []granuleUse
	for _, g := range granules {
		touched := map[int64]bool{}
		for _, x := range xs {
			for b := x.Off / g; b <= (x.Off+x.Len-1)/g; b++ {
				touched[b] = true
			}
		}
		u := granuleUse{Granule: g}
		buf := make([]byte, g)
		seen := map[[32]byte]bool{}
		for b := range touched {
			n := min(g, size-b*g)
			if n <= 0 {
				continue
			}
			if _, err := f.ReadAt(buf[:n], b*g); err != nil {
				return nil, err
			}
			if allZero(buf[:n]) {
				continue
			}
			h := sha256.Sum256(buf[:n])
			if seen[h] {
				continue
			}
			seen[h] = true
			hdr, payload := chunkstore.EncodeObject(buf[:n])
			u.Blocks++
			u.Bytes += n
			u.Stored += int64(len(hdr) + len(payload))
		}
		out = append(out, u)
	}
	return out, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// uniqueBytes is the size of the union of the extents.
func uniqueBytes(xs []extent) int64 {
	s := slices.Clone(xs)
	slices.SortFunc(s, func(a, b extent) int { return cmp.Compare(a.Off, b.Off) })
	var n, end int64
	for _, x := range s {
		if x.Off+x.Len <= end {
			continue
		}
		start := max(x.Off, end)
		n += x.Off + x.Len - start
		end = x.Off + x.Len
	}
	return n
}

// readSizeHistogram summarises read sizes: the most common ones with their counts.
func readSizeHistogram(xs []extent) string {
	count := map[int64]int{}
	for _, x := range xs {
		count[x.Len]++
	}
	sizes := make([]int64, 0, len(count))
	for k := range count {
		sizes = append(sizes, k)
	}
	slices.SortFunc(sizes, func(a, b int64) int {
		if count[a] != count[b] {
			return count[b] - count[a]
		}
		return int(a - b)
	})
	var parts []string
	for i, k := range sizes {
		if i == 6 {
			break
		}
		parts = append(parts, fmt.Sprintf("%s ×%d", sizeText(k), count[k]))
	}
	return strings.Join(parts, ", ")
}

// traceModel is what the traced boot read and what fetching it at each granularity costs.
type traceModel struct {
	xs        []extent
	sum, uniq int64 // bytes read in all, distinct
	gu        []granuleUse
}

// traceGranules are the fetch granularities the model prices (and every chunk size measured).
var traceGranules = []int64{4 * KiB, 64 * KiB, 128 * KiB, 256 * KiB, 512 * KiB, MiB, 2 * MiB, 4 * MiB}

// newTraceModel reads the trace of a boot from image (size bytes) and prices it at
// traceGranules and at chunkSizes.
func newTraceModel(trace, image string, size int64, chunkSizes []int64) (*traceModel, error) {
	xs, err := readTrace(trace)
	if err != nil {
		return nil, fmt.Errorf("trace: %w", err)
	}
	if len(xs) == 0 {
		return nil, fmt.Errorf("trace %s: no blk_co_preadv lines (qemu built without the log trace backend?)", trace)
	}
	granules := slices.Clone(traceGranules)
	for _, cs := range chunkSizes {
		if !slices.Contains(granules, cs) {
			granules = append(granules, cs)
		}
	}
	slices.Sort(granules)
	tm := &traceModel{xs: xs, uniq: uniqueBytes(xs)}
	for _, x := range xs {
		tm.sum += x.Len
	}
	if tm.gu, err = granuleCosts(image, size, xs, granules); err != nil {
		return nil, err
	}
	return tm, nil
}

// at returns the model's row for granularity g (which it priced).
func (tm *traceModel) at(g int64) granuleUse {
	for _, u := range tm.gu {
		if u.Granule == g {
			return u
		}
	}
	return granuleUse{Granule: g}
}

// figure plots the model: bytes in the touched blocks by block size.
func (tm *traceModel) figure() Figure {
	gf := Figure{File: "real-boot-granule", Kind: "line", Title: "Traced boot: data bytes in the blocks the guest's reads touch, by block size",
		XLabel: "block (chunk) size, KiB", YLabel: "MiB", LogX: true}
	var touched, stored, distinct Series
	touched.Name, stored.Name, distinct.Name = "touched chunks, uncompressed", "touched chunks, stored (on the wire)", "distinct bytes read"
	for _, u := range tm.gu {
		gf.Labels = append(gf.Labels, sizeText(u.Granule))
		gf.X = append(gf.X, float64(u.Granule)/float64(KiB))
		touched.Points = append(touched.Points, Summarize([]float64{float64(u.Bytes) / float64(MiB)}))
		stored.Points = append(stored.Points, Summarize([]float64{float64(u.Stored) / float64(MiB)}))
		distinct.Points = append(distinct.Points, Summarize([]float64{float64(tm.uniq) / float64(MiB)}))
	}
	gf.Series = []Series{touched, stored, distinct}
	return gf
}
