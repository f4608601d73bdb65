# Prints nova's own verdict on images: one "PATH\tDISK_FORMAT" per line of stdin, one
# "ok FORMAT" or "refused REASON" per line of stdout. Runs nova's do_image_deep_inspection
# (nova/virt/images.py) over nova's format inspector, with Debian's python3-nova.
import sys

from nova import exception
from nova.virt import images

for line in sys.stdin:
    path, disk_format = line.rstrip("\n").split("\t")
    try:
        fmt = images.do_image_deep_inspection({"disk_format": disk_format}, "test", path)
        print("ok", fmt, flush=True)
    except exception.ImageUnacceptable as e:
        print("refused", str(e).replace("\n", " "), flush=True)
