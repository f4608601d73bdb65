// Package nova holds nova's conventions on a compute host that several parts share without
// linking libvirt: the instance directory layout (`<instances>/<id>/disk`) and the in-use scan
// of image cache managers (the backing file of every instance disk, read with qemu-img).
package nova
