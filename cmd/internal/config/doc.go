// Package config gives every flag of a command a home in an INI file in nova's style
// (/etc/basefs/basefs.conf): a section per command ([mount], [status], …), one key per flag
// (the flag's name, `-` or `_`), a repeatable flag's values as repeated keys (oslo's
// MultiStrOpt). It knows no flag by name: whatever a command's pflag.FlagSet holds is settable,
// so a flag added to a command is settable in the file with no change here.
//
// Precedence, lowest first: the flag's default, values taken from nova's own configuration
// (NovaMapping), the file, the command line. An unknown section or key, a hidden flag, or a
// value the flag refuses is an error naming the file and line, before the command does anything.
// Every value's origin is kept (Sources) so `basefs config` can say where it came from.
//
// A flag whose Set accumulates must implement pflag.SliceValue (Replace): the command line is
// parsed a second time after the file, so that it wins.
package config
