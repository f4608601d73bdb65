package agent

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // a part of the error; "" = no error
	}{
		{"0", 0, ""},
		{"512", 512, ""},
		{"512B", 512, ""},
		{"1K", KiB, ""},
		{"1k", KiB, ""},
		{"4KiB", 4 * KiB, ""},
		{"512M", 512 * MiB, ""},
		{"512m", 512 * MiB, ""},
		{"1G", GiB, ""},
		{"2GiB", 2 * GiB, ""},
		{"3T", 3 * TiB, ""},
		{"1PiB", PiB, ""},
		{"8191P", 8191 * PiB, ""},
		{"9223372036854775807", 1<<63 - 1, ""},
		{"", 0, "empty"},
		{"G", 0, "does not start with a digit"},
		{"-1G", 0, "does not start with a digit"},
		{"+1G", 0, "does not start with a digit"},
		{" 1G", 0, "does not start with a digit"},
		{"1G ", 0, "unknown unit"},
		{"1 G", 0, "unknown unit"},
		{"1.5G", 0, "not a whole number"},
		{"1,5G", 0, "not a whole number"},
		{"01G", 0, "leading zero"},
		{"1GB", 0, "ambiguous"},
		{"1gb", 0, "ambiguous"},
		{"1MB", 0, "ambiguous"},
		{"1Gi", 0, "unknown unit"},
		{"1gib", 0, "unknown unit"},
		{"1X", 0, "unknown unit"},
		{"0x10", 0, "unknown unit"},
		{"1e9", 0, "unknown unit"},
		{"8192P", 0, "too large"},
		{"9223372036854775808", 0, "too large"},
		{"99999999999999999999999G", 0, "too large"},
	} {
		got, err := ParseSize(tc.in)
		if tc.err == "" {
			if err != nil || got != tc.want {
				t.Errorf("ParseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseSize(%q) = %d, %v; want an error saying %q", tc.in, got, err, tc.err)
		}
	}
}

func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"0", "1G", "512M", "2GiB", "1.5G", "1GB", "9223372036854775807", "8P", "01K", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseSize(%q) = %d with error %v", s, n, err)
			}
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d", s, n)
		}
		// What it accepts is digits and a known unit, and formats back to the same value.
		i := strings.IndexFunc(s, func(r rune) bool { return r < '0' || r > '9' })
		if i == 0 {
			t.Fatalf("ParseSize(%q) accepted a size without digits", s)
		}
		if i > 0 {
			if _, ok := units[s[i:]]; !ok {
				t.Fatalf("ParseSize(%q) accepted unit %q", s, s[i:])
			}
		}
		if m, err := ParseSize(strconv.FormatInt(n, 10)); err != nil || m != n {
			t.Fatalf("ParseSize(%q) = %d, but ParseSize(%d) = %d, %v", s, n, n, m, err)
		}
	})
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		0: "0 B", 1023: "1023 B", KiB: "1 KiB", 1536: "1.5 KiB", 4 * MiB: "4 MiB",
		GiB: "1 GiB", 3 * GiB / 2: "1.5 GiB", 2 * TiB: "2 TiB", 5 * PiB: "5 PiB", 1<<63 - 1: "8192.0 PiB",
	} {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
