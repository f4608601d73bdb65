// Package cli is what basefs's binaries share on their command lines: a mistake in one is a
// UsageError (the binary prints the command's usage and exits with status 2), a flag error
// is such a mistake, and results are printed as indented JSON. It holds no state; each
// binary keeps its own commands and their wiring.
package cli

import (
	"encoding/json"
	"errors"
	"io"

	"github.com/spf13/pflag"
)

// UsageError is a mistake in the command line: the usage is printed and the exit status is 2.
type UsageError struct{ Msg string }

func (e UsageError) Error() string { return e.Msg }

// Parse parses args into fs; a flag error becomes a UsageError, and --help stays
// pflag.ErrHelp.
func Parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return UsageError{err.Error()}
	}
	return nil
}

// PrintJSON writes v to w as indented JSON.
func PrintJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
