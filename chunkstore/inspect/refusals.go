package inspect

import (
	"errors"
	"sync"
	"time"
)

// Refused is one refused image as `basefs status` shows it.
type Refused struct {
	Name   string    `json:"name"` // nova's name, a Glance id or a file
	Glance string    `json:"glance_id,omitempty"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	ref    Refusal
}

// Refusals remembers the latest refused images (at most maxRefusals) so status can say why,
// and so an image refused by its Glance id is not fetched again: a Glance image's data never
// changes once it is active. Safe for concurrent use.
type Refusals struct {
	mu   sync.Mutex
	list []Refused
}

const maxRefusals = 256

// Record remembers a refusal of name (glanceID may be empty) and returns err unchanged.
// Errors that are not refusals are not recorded.
func (r *Refusals) Record(name, glanceID string, err error) error {
	if r == nil || !errors.Is(err, ErrRefused) {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, x := range r.list {
		if x.Name == name {
			r.list = append(r.list[:i], r.list[i+1:]...)
			break
		}
	}
	if len(r.list) == maxRefusals {
		r.list = r.list[1:]
	}
	x := Refused{Name: name, Glance: glanceID, Reason: err.Error(), At: time.Now().UTC()}
	var ref *Refusal
	if errors.As(err, &ref) {
		x.ref = *ref
	}
	r.list = append(r.list, x)
	return err
}

// Glance returns the recorded refusal of Glance image id as an error wrapping ErrRefused,
// or nil.
func (r *Refusals) Glance(id string) error {
	if r == nil || id == "" {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.list {
		if x.Glance == id {
			ref := x.ref
			return &ref
		}
	}
	return nil
}

// List returns the refusals, oldest first.
func (r *Refusals) List() []Refused {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Refused(nil), r.list...)
}
