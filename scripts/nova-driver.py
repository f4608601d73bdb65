#!/usr/bin/python3
"""nova-driver.py — run NOVA'S OWN CODE (Debian python3-nova, Zed) against an instances_path
whose _base is a plain directory or a basefs mount, with a real Glance, so that tests can prove
an unchanged nova-compute works on the mount. Run it with Debian's /usr/bin/python3.

  nova-driver.py SUBCOMMAND --instances-path P [--glance URL] [--backend qcow2|flat] ...

Each subcommand prints one JSON object on stdout and exits 0, or prints a clear message on
stderr and exits 1. nova's log goes to stderr (--debug for DEBUG).

  cache --image-id ID --instance-uuid U [--size BYTES]
      LibvirtDriver._create_image() for a root disk only: _create_and_inject_local_root ->
      _try_fetch_image_cache -> imagebackend.Backend(use_cow).by_name(instance, 'disk').cache(
      fetch_func=libvirt_utils.fetch_image, filename=sha1(ID), image_id=ID, size=root_gb GiB).
      libvirt_utils.fetch_image (-> images.fetch_to_raw -> Glance download) is wrapped to record
      whether it was called: "fetch_called".
  ephemeral --instance-uuid U [--gb N]     _create_image() with only disk.local (boot from
      volume, so no root disk): cache(fetch_func=LibvirtDriver._create_ephemeral) of
      _base/ephemeral_<N>_<hash>: qemu-img create + mkfs.ext4 in _base.
  swap --instance-uuid U [--mb N]          same with disk.swap: _base/swap_<N>, mkswap.
  imagecache-update [--running U[:IMAGE],...]   ComputeManager._run_image_cache_manager_pass:
      storage_users.register_storage_use/get_storage_users, then LibvirtDriver.manage_image_cache
      -> imagecache.ImageCacheManager.update(context, instances).
  disk-usage                                ImageCacheManager.get_disk_usage() (what
      LibvirtDriver._get_disk_size_reserved_for_image_cache reserves) and
      LibvirtDriver._get_local_gb_info() (statvfs of instances_path).
  fetch-to-raw --image-id ID [--cache-image]   images.fetch_to_raw(_base/sha1(ID)): download to
      <sha1>.part, inspect, rename to <sha1>; --cache-image: LibvirtDriver.cache_image() (nova's
      image pre-cache API: utime when present, fetch_to_raw otherwise).

Only nova's DATABASE lookups are replaced, by an in-memory "database" of the instances this
driver created (a JSON file, --db, default <instances-path>/nova-driver-db.json):
  * objects.Instance lazy loads (obj_load_attr -> Instance.get_by_uuid / instance_extra): every
    field nova reads is set when the object is built; a lazy load fails loudly.
  * objects.InstanceList.get_by_filters(host=nodes) in _run_image_cache_manager_pass: the
    instances of this host are built in memory (--running, or the uuid directories with a disk).
  * objects.BlockDeviceMappingList.bdms_by_instance_uuid in
    imagecache._list_running_instances: blank swap/ephemeral BDMs built from the recorded
    flavor, as nova's compute API creates them.
Nothing else is faked: files, qemu-img, mkfs, cp and Glance are real; privsep runs in-process.
"""
import argparse
import functools
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid as uuidlib

GiB = 1 << 30


def die(msg):
    print("nova-driver.py: " + msg, file=sys.stderr)
    sys.exit(1)


try:
    import nova.conf
    from oslo_log import log as oslo_log
except ImportError as e:
    die("cannot import nova (%s): install python3-nova and run with Debian's /usr/bin/python3" % e)

CONF = nova.conf.CONF


class Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 1 too, like every other failure
        self.print_usage(sys.stderr)
        die("%s: %s" % (self.prog, message))


def parse_args(argv):
    common = Parser(add_help=False)
    common.add_argument("--instances-path", required=True, help="nova's CONF.instances_path")
    common.add_argument("--glance", default="", help="Glance endpoint, e.g. http://127.0.0.1:9292")
    common.add_argument("--backend", choices=["qcow2", "flat"], default="qcow2",
                        help="[libvirt] images_type (qcow2: use_cow_images=True)")
    common.add_argument("--original-min-age", type=int, default=86400,
                        help="[image_cache] remove_unused_original_minimum_age_seconds")
    common.add_argument("--resized-min-age", type=int, default=3600,
                        help="[image_cache] remove_unused_resized_minimum_age_seconds")
    common.add_argument("--no-force-raw", action="store_true", help="force_raw_images=False")
    common.add_argument("--host", default="nova-driver", help="CONF.host")
    common.add_argument("--db", default="", help="the in-memory database's JSON file")
    common.add_argument("--debug", action="store_true", help="nova's DEBUG log on stderr")
    p = Parser(prog="nova-driver.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=Parser)
    c = sub.add_parser("cache", parents=[common])
    c.add_argument("--image-id", required=True)
    c.add_argument("--instance-uuid", required=True)
    c.add_argument("--size", type=int, default=0,
                   help="root disk bytes (flavor root_gb = ceil(BYTES/GiB)); 0: the image's")
    e = sub.add_parser("ephemeral", parents=[common])
    e.add_argument("--instance-uuid", required=True)
    e.add_argument("--gb", type=int, default=1)
    e.add_argument("--os-type", default="linux", help="instance os_type (nova: None -> vfat, linux -> ext4)")
    s = sub.add_parser("swap", parents=[common])
    s.add_argument("--instance-uuid", required=True)
    s.add_argument("--mb", type=int, default=64)
    u = sub.add_parser("imagecache-update", parents=[common])
    u.add_argument("--running", default=None,
                   help="comma-separated UUID[:IMAGE_ID] of this host's instances ('' none); "
                        "default: uuid directories of instances-path with a disk file")
    sub.add_parser("disk-usage", parents=[common])
    f = sub.add_parser("fetch-to-raw", parents=[common])
    f.add_argument("--image-id", required=True)
    f.add_argument("--cache-image", action="store_true", help="via LibvirtDriver.cache_image")
    a = p.parse_args(argv)
    a.instances_path = os.path.abspath(a.instances_path)
    a.db = a.db or os.path.join(a.instances_path, "nova-driver-db.json")
    if a.cmd in ("cache", "fetch-to-raw") and not a.glance:
        die("%s needs --glance URL" % a.cmd)
    return a


def configure(a):
    oslo_log.register_options(CONF)
    CONF([], project="nova", default_config_files=[], default_config_dirs=[])
    ov = CONF.set_override
    ov("instances_path", a.instances_path)
    ov("host", a.host)
    ov("state_path", a.instances_path)
    ov("use_cow_images", a.backend == "qcow2")
    ov("force_raw_images", not a.no_force_raw)
    ov("images_type", a.backend, "libvirt")
    ov("virt_type", "qemu", "libvirt")
    ov("subdirectory_name", "_base", "image_cache")
    ov("remove_unused_base_images", True, "image_cache")
    ov("remove_unused_original_minimum_age_seconds", a.original_min_age, "image_cache")
    ov("remove_unused_resized_minimum_age_seconds", a.resized_min_age, "image_cache")
    ov("reserve_disk_resource_for_image_cache", True, "workarounds")
    if a.glance:
        ov("api_servers", [a.glance.rstrip("/")], "glance")
    ov("num_retries", 0, "glance")
    try:
        ov("auth_type", "none", "glance")  # a keystoneauth option; Glance runs without Keystone
    except Exception:
        pass
    ov("lock_path", os.path.join(a.instances_path, "locks"), "oslo_concurrency")
    ov("debug", a.debug)
    ov("use_stderr", True)
    oslo_log.setup(CONF, "nova")

    from nova import objects
    import nova.privsep
    objects.register_all()
    # In-process privsep: nova.privsep.path.utime etc. run here, as root, with no daemon.
    nova.privsep.sys_admin_pctxt.set_client_mode(False)

    # DB lookup replaced: Instance lazy loads. Every field nova reads is set in make_instance.
    def no_lazy_load(self, attrname):
        die("nova lazy-loaded Instance.%s (a DB lookup); the driver must set it" % attrname)
    objects.Instance.obj_load_attr = no_lazy_load


# --- the in-memory database ---------------------------------------------------------------------

def db_load(a):
    try:
        with open(a.db) as f:
            return json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError as e:
        die("%s: %s" % (a.db, e))


def db_record(a, u, **fields):
    db = db_load(a)
    db.setdefault(u, {}).update({k: v for k, v in fields.items() if v is not None})
    tmp = a.db + ".tmp"
    with open(tmp, "w") as f:
        json.dump(db, f, indent=1, sort_keys=True)
    os.rename(tmp, a.db)
    return db[u]


def make_instance(u, image_ref=None, root_gb=0, ephemeral_gb=0, swap_mb=0, os_type=None):
    from nova import objects
    from nova.compute import vm_states
    try:
        u = str(uuidlib.UUID(u))
    except ValueError:
        die("%r is not a uuid" % u)
    flavor = objects.Flavor(id=1, flavorid="nova-driver", name="nova-driver", memory_mb=128,
                            vcpus=1, root_gb=root_gb, ephemeral_gb=ephemeral_gb, swap=swap_mb,
                            extra_specs={})
    inst = objects.Instance(
        id=int(u.replace("-", "")[:7], 16), uuid=u, host=CONF.host, node=CONF.host,
        image_ref=image_ref or None, kernel_id=None, ramdisk_id=None, os_type=os_type, vm_mode=None,
        vm_state=vm_states.ACTIVE, task_state=None, config_drive="", flavor=flavor,
        system_metadata={}, metadata={}, trusted_certs=None, migration_context=None,
        ephemeral_key_uuid=None, key_data=None, user_data=None, deleted=False,
        project_id="nova-driver", user_id="nova-driver")
    inst.obj_reset_changes()
    return inst


def instance_from_db(a, u, image_ref=None):
    r = db_load(a).get(u, {})
    return make_instance(u, image_ref or r.get("image_ref"), r.get("root_gb", 0),
                         r.get("ephemeral_gb", 0), r.get("swap_mb", 0), r.get("os_type"))


def fake_bdms(a):
    """BlockDeviceMappingList.bdms_by_instance_uuid from the in-memory database."""
    from nova import objects

    def bdms_by_instance_uuid(context, uuids):
        db, out = db_load(a), {}
        for u in uuids:
            r, bdms = db.get(u, {}), []
            for size, fmt in ((r.get("swap_mb", 0), "swap"), (r.get("ephemeral_gb", 0), None)):
                if size:
                    bdms.append(objects.BlockDeviceMapping(
                        instance_uuid=u, source_type="blank", destination_type="local",
                        guest_format=fmt, volume_size=size, boot_index=-1, device_type="disk",
                        disk_bus=None, device_name=None, no_device=False, volume_id=None,
                        snapshot_id=None, image_id=None, connection_info=None,
                        delete_on_termination=True, encrypted=False,
                        encryption_secret_uuid=None, encryption_format=None,
                        encryption_options=None))
            if bdms:
                out[u] = objects.BlockDeviceMappingList(objects=bdms)
        return out
    objects.BlockDeviceMappingList.bdms_by_instance_uuid = staticmethod(bdms_by_instance_uuid)


# --- helpers ------------------------------------------------------------------------------------

def context():
    from nova import context as nova_context
    # Glance has no authtoken middleware; keystoneauth still wants some token to send.
    return nova_context.RequestContext(user_id="nova-driver", project_id="nova-driver",
                                       auth_token="nova-driver-no-keystone", is_admin=True)


def libvirt_driver():
    from nova.virt import virtapi
    from nova.virt.libvirt import driver
    return driver.LibvirtDriver(virtapi.VirtAPI(), False)  # connects to libvirt only on use


def base_dir():
    return os.path.join(CONF.instances_path, CONF.image_cache.subdirectory_name)


def qemu_info(path):
    if not os.path.exists(path):
        return None
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path], capture_output=True,
                         text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip()}
    return json.loads(out.stdout)


def file_info(path):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return {"path": path, "size": st.st_size, "blocks_bytes": st.st_blocks * 512,
            "mtime": st.st_mtime, "mode": "%o" % st.st_mode, "dev": st.st_dev}


def listing():
    out = {}
    for ent in sorted(os.listdir(base_dir())) if os.path.isdir(base_dir()) else []:
        fi = file_info(os.path.join(base_dir(), ent))
        if fi:
            out[ent] = {"size": fi["size"], "mtime": fi["mtime"]}
    return out


def magic(path):
    """What mkfs/mkswap wrote at the start of path (a raw file), if anything."""
    try:
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        return "unreadable: %s" % e
    if len(head) >= 1082 and head[1080:1082] == b"\x53\xef":
        return "ext"
    if head[4086:4096] == b"SWAPSPACE2":
        return "swap"
    if len(head) >= 512 and head[510:512] == b"\x55\xaa":
        return "fat/ntfs"
    return "none"


class Recorder:
    """Wraps nova's libvirt_utils.fetch_image (the real one is still what runs)."""

    def __init__(self):
        from nova.virt.libvirt import utils as libvirt_utils
        self.calls, self.real, self.mod = [], libvirt_utils.fetch_image, libvirt_utils

        @functools.wraps(self.real)
        def fetch_image(context, target, image_id, trusted_certs=None):
            t0 = time.monotonic()
            self.real(context, target, image_id, trusted_certs)
            self.calls.append({"target": target, "image_id": image_id,
                               "seconds": round(time.monotonic() - t0, 3),
                               "bytes": os.path.getsize(target)})
        libvirt_utils.fetch_image = fetch_image


def disk_mapping(name):
    dev = {"disk": "vda", "disk.local": "vdb", "disk.swap": "vdc"}[name]
    return {name: {"bus": "virtio", "dev": dev, "type": "disk"}}


# Boot from volume: _create_image skips the root disk and creates only the local disks asked.
BFV = {"root_device_name": "/dev/vda", "ephemerals": [], "swap": None,
       "block_device_mapping": [{"boot_index": 0, "mount_device": "/dev/vda",
                                 "connection_info": {}}]}


# --- subcommands --------------------------------------------------------------------------------

def cmd_cache(a):
    from nova.virt.libvirt import imagecache
    root_gb = -(-a.size // GiB) if a.size > 0 else 0
    inst = make_instance(a.instance_uuid, a.image_id, root_gb=root_gb)
    db_record(a, inst.uuid, image_ref=a.image_id, root_gb=root_gb)
    drv, rec = libvirt_driver(), Recorder()
    base = os.path.join(base_dir(), imagecache.get_cache_fname(a.image_id))
    before = file_info(base)
    t0 = time.monotonic()
    drv._create_image(context(), inst, disk_mapping("disk"))
    secs = time.monotonic() - t0
    disk = os.path.join(CONF.instances_path, inst.uuid, "disk")
    info = qemu_info(disk) or die("nova created no %s" % disk)
    return {"backend": a.backend, "instance_uuid": inst.uuid, "image_id": a.image_id,
            "size": root_gb * GiB or None, "disk": disk, "disk_format": info.get("format"),
            "virtual_size": info.get("virtual-size"),
            "backing_file": info.get("full-backing-filename") or info.get("backing-filename"),
            "qemu_img_info": info, "base": base, "base_before": before,
            "base_after": file_info(base), "fetch_called": bool(rec.calls),
            "fetches": rec.calls, "seconds": round(secs, 3)}


def local_disk(a, name, fname, **flavor):
    inst = make_instance(a.instance_uuid, **flavor)
    db_record(a, inst.uuid, **flavor)
    drv = libvirt_driver()
    t0 = time.monotonic()
    drv._create_image(context(), inst, disk_mapping(name), block_device_info=BFV)
    secs = time.monotonic() - t0
    disk = os.path.join(CONF.instances_path, inst.uuid, name)
    base = os.path.join(base_dir(), fname)
    info = qemu_info(disk) or die("nova created no %s" % disk)
    res = {"backend": a.backend, "instance_uuid": inst.uuid, "disk": disk,
           "disk_format": info.get("format"), "virtual_size": info.get("virtual-size"),
           "backing_file": info.get("full-backing-filename") or info.get("backing-filename"),
           "qemu_img_info": info, "base": base, "base_info": file_info(base),
           "base_qemu_img_info": qemu_info(base), "base_magic": magic(base),
           "seconds": round(secs, 3)}
    # Flat generates local disks in place (no _base file); Qcow2 overlays the _base file.
    res["disk_magic"] = magic(disk) if info.get("format") == "raw" else res["base_magic"]
    return res


def cmd_ephemeral(a):
    import nova.privsep.fs
    fs = nova.privsep.fs.get_fs_type_for_os_type(a.os_type)
    ext = nova.privsep.fs.get_file_extension_for_os_type(fs, CONF.default_ephemeral_format)
    fname = "ephemeral_%d_%s" % (a.gb, ext)
    res = local_disk(a, "disk.local", fname, ephemeral_gb=a.gb, os_type=a.os_type)
    res["valid"] = res["disk_magic"] == "ext" and (a.backend == "flat" or res["base_magic"] == "ext")
    return res


def cmd_swap(a):
    res = local_disk(a, "disk.swap", "swap_%d" % a.mb, swap_mb=a.mb)
    res["valid"] = res["disk_magic"] == "swap" and (a.backend == "flat" or res["base_magic"] == "swap")
    return res


def host_instances(a):
    """This host's instances: --running, or uuid directories holding a disk."""
    if a.running is not None:
        out = []
        for item in filter(None, (s.strip() for s in a.running.split(","))):
            u, _, img = item.partition(":")
            out.append(instance_from_db(a, u, img or None))
        return out
    out = []
    for ent in sorted(os.listdir(CONF.instances_path)):
        try:
            uuidlib.UUID(ent)
        except ValueError:
            continue
        if any(os.path.exists(os.path.join(CONF.instances_path, ent, d))
               for d in ("disk", "disk.local", "disk.swap")):
            out.append(instance_from_db(a, ent))
    return out


def cmd_imagecache_update(a):
    from nova.virt import storage_users
    fake_bdms(a)
    drv = libvirt_driver()
    before = listing()
    # ComputeManager._run_image_cache_manager_pass, with InstanceList.get_by_filters(host in
    # nodes) replaced by the in-memory list of this host's instances.
    storage_users.register_storage_use(CONF.instances_path, CONF.host)
    nodes = storage_users.get_storage_users(CONF.instances_path)
    insts = [i for i in host_instances(a) if i.host in nodes]
    t0 = time.monotonic()
    drv.manage_image_cache(context(), insts)
    secs = time.monotonic() - t0
    m, after = drv.image_cache_manager, listing()
    return {"instances": [{"uuid": i.uuid, "name": i.name, "image_ref": i.image_ref}
                          for i in insts],
            "storage_users": nodes, "before": before, "after": after,
            "removed": sorted(set(before) - set(after)),
            "touched": sorted(n for n in after if n in before and
                              after[n]["mtime"] != before[n]["mtime"]),
            "used_images": sorted(m.used_images), "originals": sorted(m.originals),
            "active_base_files": sorted(m.active_base_files),
            "removable_base_files": sorted(m.removable_base_files),
            "back_swap_images": sorted(m.back_swap_images),
            "used_swap_images": sorted(m.used_swap_images),
            "back_ephemeral_images": sorted(m.back_ephemeral_images),
            "used_ephemeral_images": sorted(m.used_ephemeral_images),
            "seconds": round(secs, 3)}


def cmd_disk_usage(a):
    from nova.virt.libvirt import driver
    from nova.virt.libvirt import utils as libvirt_utils
    drv = libvirt_driver()
    bd = base_dir()
    files = [os.path.join(bd, f) for f in os.listdir(bd)] if os.path.isdir(bd) else []
    return {"image_cache_bytes": drv.image_cache_manager.get_disk_usage(),
            "reserved_gb_for_image_cache": drv._get_disk_size_reserved_for_image_cache(),
            "same_device": os.path.isdir(bd) and
            os.stat(CONF.instances_path).st_dev == os.stat(bd).st_dev,
            "base_blocks_bytes": sum(os.stat(p).st_blocks * 512 for p in files
                                     if os.path.isfile(p)),
            "base_size_bytes": sum(os.path.getsize(p) for p in files if os.path.isfile(p)),
            "local_gb_info": driver.LibvirtDriver._get_local_gb_info(),
            "base_fs_info": libvirt_utils.get_fs_info(bd) if os.path.isdir(bd) else None}


def cmd_fetch_to_raw(a):
    from nova.virt import images
    from nova.virt.libvirt import imagecache
    from oslo_utils import fileutils
    base = os.path.join(base_dir(), imagecache.get_cache_fname(a.image_id))
    before = file_info(base)
    t0 = time.monotonic()
    if a.cache_image:
        fetched = libvirt_driver().cache_image(context(), a.image_id)
    else:
        fileutils.ensure_tree(base_dir())
        images.fetch_to_raw(context(), a.image_id, base)
        fetched = True
    return {"image_id": a.image_id, "base": base, "base_before": before,
            "base_after": file_info(base), "fetched": fetched,
            "part_left": os.path.exists(base + ".part"), "qemu_img_info": qemu_info(base),
            "seconds": round(time.monotonic() - t0, 3)}


def main(argv):
    a = parse_args(argv)
    os.makedirs(a.instances_path, exist_ok=True)
    configure(a)
    run = {"cache": cmd_cache, "ephemeral": cmd_ephemeral, "swap": cmd_swap,
           "imagecache-update": cmd_imagecache_update, "disk-usage": cmd_disk_usage,
           "fetch-to-raw": cmd_fetch_to_raw}[a.cmd]
    try:
        res = run(a)
    except SystemExit:
        raise
    except Exception as e:
        if a.debug:
            import traceback
            traceback.print_exc()
        die("%s failed: %s: %s" % (a.cmd, type(e).__name__, e))
    res["command"] = a.cmd
    print(json.dumps(res, sort_keys=True))


if __name__ == "__main__":
    main(sys.argv[1:])
