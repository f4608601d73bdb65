package agent

import (
	"errors"
	"fmt"

	"libvirt.org/go/libvirt"
)

// Kinds of failure, for errors.Is. An image no origin knows wraps chunkstore.ErrNotFound.
var (
	// ErrInvalid: the request is wrong (a bad ID, size or path, a disk smaller than the
	// image, a missing kernel); nothing was changed.
	ErrInvalid = errors.New("invalid request")
	// ErrExists: an instance with that ID exists (its domain or its directory); nothing was
	// changed.
	ErrExists = errors.New("instance exists")
	// ErrNoInstance: show found neither a domain nor a directory for the ID.
	ErrNoInstance = errors.New("no such instance")
)

// kindError is an error of one of the kinds above; it prints only its message.
type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.err, e.kind} }

func kindf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, err: fmt.Errorf(format, args...)}
}

// virtError makes libvirt's errors readable (its Error() is "virError(Code=…)") while keeping
// errors.Is(err, libvirt.ERR_…) working.
type virtError struct{ e libvirt.Error }

func (v virtError) Error() string { return v.e.Message }
func (v virtError) Unwrap() error { return v.e }

func virt(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) {
		return virtError{le}
	}
	return err
}

// isVirt reports whether err is the libvirt error code.
func isVirt(err error, code libvirt.ErrorNumber) bool { return errors.Is(err, code) }
