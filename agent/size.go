package agent

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Binary size units: sizes in basefs are powers of 1024, as qemu-img's and nova's.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
	PiB
)

// units maps the suffixes ParseSize accepts to their multipliers.
var units = map[string]int64{
	"": 1, "B": 1,
	"K": KiB, "k": KiB, "KiB": KiB,
	"M": MiB, "m": MiB, "MiB": MiB,
	"G": GiB, "g": GiB, "GiB": GiB,
	"T": TiB, "t": TiB, "TiB": TiB,
	"P": PiB, "p": PiB, "PiB": PiB,
}

// ParseSize parses a size given by a person: a decimal number of bytes, optionally followed
// by a binary unit — K, M, G, T, P (either case) or KiB, MiB, GiB, TiB, PiB, all powers of
// 1024; B means bytes. It is strict: no sign, no spaces, no fractions, no leading zeros, no
// overflow, and no decimal-looking units (KB, MB, GB…: some read them as powers of 1000).
// Zero is a valid result; callers decide whether it makes sense.
func ParseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	num, unit := s[:i], s[i:]
	switch {
	case s == "":
		return 0, fmt.Errorf("size is empty: give a number of bytes or a number with a unit (e.g. 512M, 1G, 2GiB)")
	case num == "":
		return 0, fmt.Errorf("size %q: does not start with a digit: give a number of bytes or a number with a unit (e.g. 512M, 1G, 2GiB)", s)
	case len(num) > 1 && num[0] == '0':
		return 0, fmt.Errorf("size %q: leading zero", s)
	case strings.HasPrefix(unit, ".") || strings.HasPrefix(unit, ","):
		return 0, fmt.Errorf("size %q: not a whole number: use a smaller unit (e.g. 1536M for 1.5G)", s)
	}
	mult, ok := units[unit]
	if !ok {
		switch strings.ToUpper(unit) {
		case "KB", "MB", "GB", "TB", "PB":
			return 0, fmt.Errorf("size %q: %q is ambiguous (powers of 1000 or 1024?): write %s or %siB (powers of 1024) or a number of bytes", s, unit, unit[:1], strings.ToUpper(unit[:1]))
		}
		return 0, fmt.Errorf("size %q: unknown unit %q: use K, M, G, T, P or KiB, MiB, GiB, TiB, PiB (powers of 1024), or none for bytes", s, unit)
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

// FormatSize formats n bytes for people: "512 B", "4.0 MiB", "1.5 GiB". Exact multiples of a
// unit print without a fraction ("1 GiB").
func FormatSize(n int64) string {
	if n < KiB {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := KiB, 0
	for m := n / KiB; m >= KiB && exp < 4; m /= KiB {
		div *= KiB
		exp++
	}
	unit := "KMGTP"[exp : exp+1]
	if n%div == 0 {
		return fmt.Sprintf("%d %siB", n/div, unit)
	}
	return fmt.Sprintf("%.1f %siB", float64(n)/float64(div), unit)
}
