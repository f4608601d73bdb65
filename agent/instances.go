package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"libvirt.org/go/libvirt"
	"libvirt.org/go/libvirtxml"

	"github.com/basefs/basefs/chunkstore"
)

// TerminateResult says what terminate did.
type TerminateResult struct {
	ID      string `json:"id"`
	Existed bool   `json:"existed"`
	Domain  string `json:"domain,omitempty"`       // the domain destroyed (if running) and undefined
	State   string `json:"domain_state,omitempty"` // its state before
	Dir     string `json:"dir,omitempty"`          // the instance directory removed
	// LeftAlone is a directory the domain's metadata named outside the instances path: not
	// removed (only <instances path>/<id> ever is).
	LeftAlone string `json:"left_alone,omitempty"`
	Message   string `json:"message"`
}

// Terminate destroys and undefines instance id's domain and removes its directory; the base
// stays. An instance that does not exist is not an error (orchestrators retry deletes): the
// result says so.
func (a *Agent) Terminate(ctx context.Context, id string) (*TerminateResult, error) {
	conn, err := a.connectFor(id)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	res := &TerminateResult{ID: id}
	name := DomainName(id)
	dirs := []string{a.Dir(id)}
	dom, err := conn.LookupDomainByName(name)
	switch {
	case err == nil:
		defer dom.Free()
		res.Existed, res.Domain = true, name
		// Only the instance's directory under the instances path is removed: a directory the
		// domain's metadata names elsewhere (spawned with another --instances-path, or a
		// domain defined by someone else naming /etc/<id>) is left alone, and said so.
		if x, err := dom.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE); err == nil {
			var def libvirtxml.Domain
			if def.Unmarshal(x) == nil {
				if m, err := parseMetadata(def.Metadata); err == nil && m.Dir != "" && filepath.Clean(m.Dir) != dirs[0] {
					a.log.Warn("terminate: the domain's metadata names a directory outside the instances path: left alone",
						"domain", name, "dir", m.Dir, "instances_path", a.cfg.InstancesPath)
					res.LeftAlone = m.Dir
				}
			}
		}
		s, _, err := dom.GetState()
		if err != nil && !isVirt(err, libvirt.ERR_NO_DOMAIN) {
			return nil, fmt.Errorf("libvirt: %s: %w", name, virt(err))
		}
		res.State = stateName(s)
		if s != libvirt.DOMAIN_SHUTOFF {
			// It may power off or be destroyed by someone else meanwhile: not an error.
			if err := dom.Destroy(); err != nil && !isVirt(err, libvirt.ERR_OPERATION_INVALID) && !isVirt(err, libvirt.ERR_NO_DOMAIN) {
				return nil, fmt.Errorf("libvirt: destroy %s: %w", name, virt(err))
			}
		}
		if err := undefine(dom); err != nil {
			return nil, fmt.Errorf("libvirt: %s: %w", name, err)
		}
		a.log.Info("domain removed", "domain", name)
	case isVirt(err, libvirt.ERR_NO_DOMAIN):
	default:
		return nil, fmt.Errorf("libvirt: look up domain %s: %w", name, virt(err))
	}
	for _, d := range dirs {
		if _, err := os.Lstat(d); err != nil {
			continue
		}
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("remove instance directory: %w", err)
		}
		res.Existed = true
		if res.Dir == "" {
			res.Dir = d
		}
	}
	switch {
	case !res.Existed:
		res.Message = fmt.Sprintf("instance %s does not exist: nothing to terminate", id)
	case res.Domain != "" && res.Dir != "":
		res.Message = fmt.Sprintf("terminated %s: domain %s (%s) %s, %s removed", id, name, res.State, domainDone(res.State), res.Dir)
	case res.Domain != "":
		res.Message = fmt.Sprintf("terminated %s: domain %s (%s) %s; it had no instance directory", id, name, res.State, domainDone(res.State))
	default:
		res.Message = fmt.Sprintf("terminated %s: it had no domain; %s removed", id, res.Dir)
	}
	if res.LeftAlone != "" {
		res.Message += fmt.Sprintf("; the domain named %s as its directory, outside %s: left alone", res.LeftAlone, a.cfg.InstancesPath)
	}
	return res, nil
}

func domainDone(state string) string {
	if state == stateName(libvirt.DOMAIN_SHUTOFF) {
		return "undefined"
	}
	return "destroyed and undefined"
}

// Show returns instance id: from its domain, or, if it has none, from its directory's
// libvirt.xml. Neither → ErrNoInstance.
func (a *Agent) Show(ctx context.Context, id string) (*Instance, error) {
	conn, err := a.connectFor(id)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	dom, err := conn.LookupDomainByName(DomainName(id))
	switch {
	case err == nil:
		defer dom.Free()
		inst, err := a.fromDomain(dom, id)
		if err != nil && isVirt(err, libvirt.ERR_NO_DOMAIN) {
			break // undefined meanwhile: look at the directory
		}
		return inst, err
	case isVirt(err, libvirt.ERR_NO_DOMAIN):
	default:
		return nil, fmt.Errorf("libvirt: look up domain %s: %w", DomainName(id), virt(err))
	}
	if _, err := os.Stat(a.Dir(id)); err != nil {
		return nil, kindf(ErrNoInstance, "instance %s does not exist (no domain %s, no directory %s)", id, DomainName(id), a.Dir(id))
	}
	return a.fromDir(id), nil
}

// List returns the agent's instances, sorted by ID: every domain named basefs-<ID>, and
// every instance directory without a domain (state "no-domain").
func (a *Agent) List(ctx context.Context) ([]Instance, error) {
	conn, err := a.connect()
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	doms, err := conn.ListAllDomains(0)
	if err != nil {
		return nil, fmt.Errorf("libvirt: list domains: %w", virt(err))
	}
	seen := map[string]bool{}
	list := []Instance{}
	for i := range doms {
		dom := &doms[i]
		name, err := dom.GetName()
		id, ours := idFromDomain(name)
		if err == nil && ours {
			inst, err := a.fromDomain(dom, id)
			if err == nil {
				list = append(list, *inst)
				seen[id] = true
			} else if !isVirt(err, libvirt.ERR_NO_DOMAIN) {
				a.log.Warn("list: skipping domain", "domain", name, "err", err)
			}
		}
		dom.Free()
	}
	entries, err := os.ReadDir(a.cfg.InstancesPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("instances path: %w", err)
	}
	for _, e := range entries {
		if !e.IsDir() || seen[e.Name()] || ValidateID(e.Name()) != nil {
			continue
		}
		list = append(list, *a.fromDir(e.Name()))
	}
	sortInstances(list)
	return list, nil
}

func sortInstances(l []Instance) {
	slices.SortFunc(l, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
}

// fromDomain describes instance id from its domain's definition and state.
func (a *Agent) fromDomain(dom *libvirt.Domain, id string) (*Instance, error) {
	s, _, err := dom.GetState()
	if err != nil {
		return nil, virt(err)
	}
	x, err := dom.GetXMLDesc(libvirt.DOMAIN_XML_INACTIVE)
	if err != nil {
		return nil, virt(err)
	}
	var def libvirtxml.Domain
	if err := def.Unmarshal(x); err != nil {
		return nil, fmt.Errorf("domain %s: %w", DomainName(id), err)
	}
	inst := describe(id, &def, a.Dir(id))
	inst.Domain, inst.State = DomainName(id), stateName(s)
	return inst, nil
}

// fromDir describes instance id from the libvirt.xml in its directory (it has no domain).
func (a *Agent) fromDir(id string) *Instance {
	dir := a.Dir(id)
	var def libvirtxml.Domain
	if b, err := os.ReadFile(filepath.Join(dir, XMLFile)); err == nil {
		if def.Unmarshal(string(b)) != nil {
			def = libvirtxml.Domain{}
		}
	}
	inst := describe(id, &def, dir)
	inst.State = StateNoDomain
	return inst
}

// describe fills an Instance from a domain definition, its metadata and the overlay's file.
func describe(id string, def *libvirtxml.Domain, dir string) *Instance {
	inst := &Instance{ID: id, Dir: dir, Disk: filepath.Join(dir, DiskFile), Console: filepath.Join(dir, ConsoleFile), VirtType: def.Type}
	if m, err := parseMetadata(def.Metadata); err == nil {
		inst.Image, _ = chunkstore.ParseDigest(m.Image)
		inst.ImageSize, inst.View, inst.DiskSize, inst.Created = m.ImageSize, m.View, m.DiskSize, m.Created
		if m.Dir != "" {
			inst.Dir = m.Dir
			inst.Disk, inst.Console = filepath.Join(m.Dir, DiskFile), filepath.Join(m.Dir, ConsoleFile)
		}
		if m.Base != "" && m.View != "" {
			inst.Backing = filepath.Join(m.Base, m.View)
		}
	}
	if def.VCPU != nil {
		inst.VCPUs = def.VCPU.Value
	}
	if def.Memory != nil {
		inst.Memory = memoryBytes(def.Memory.Value, def.Memory.Unit)
	}
	if def.Devices != nil {
		for _, d := range def.Devices.Disks {
			if d.Source != nil && d.Source.File != nil && d.Target != nil && d.Target.Dev == "vda" {
				inst.Disk = d.Source.File.File
				if b := d.BackingStore; inst.Backing == "" && b != nil && b.Source != nil && b.Source.File != nil {
					inst.Backing = b.Source.File.File
				}
			}
		}
		for _, s := range def.Devices.Serials {
			if s.Source != nil && s.Source.File != nil {
				inst.Console = s.Source.File.Path
				break
			}
		}
	}
	inst.Allocated = allocated(inst.Disk)
	return inst
}

func memoryBytes(v uint, unit string) int64 {
	n := int64(v)
	switch unit {
	case "b", "bytes":
		return n
	case "", "k", "KiB":
		return n * KiB
	case "M", "MiB":
		return n * MiB
	case "G", "GiB":
		return n * GiB
	case "KB":
		return n * 1000
	case "MB":
		return n * 1000 * 1000
	case "GB":
		return n * 1000 * 1000 * 1000
	}
	return n * KiB
}

// connectFor checks instance id and connects to libvirt for an operation on it.
func (a *Agent) connectFor(id string) (*libvirt.Connect, error) {
	if err := ValidateID(id); err != nil {
		return nil, kindf(ErrInvalid, "%w", err)
	}
	return a.connect()
}
