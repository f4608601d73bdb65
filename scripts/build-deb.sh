#!/usr/bin/env bash
# build-deb.sh OUTDIR [VERSION] — builds OUTDIR/basefs_VERSION_ARCH.deb with dpkg-deb.
#
# Why dpkg-deb and not nfpm/goreleaser: it is Debian's own tool, on every host that installs
# the package, and brings no Go module into go.mod; the package is a handful of files, and
# lintian checks the result. VERSION defaults to one from git (git describe: a tag vX.Y.Z
# gives X.Y.Z, otherwise 0.0.<commits>+g<hash>, +dirty for uncommitted changes); it is also
# the version `basefs status` reports (-X main.version). DEB_COMPRESS: dpkg-deb's compressor
# (default xz; the tests use gzip, 10x faster here).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: build-deb.sh OUTDIR [VERSION]}
version=${2:-}
if [ -z "$version" ]; then
	if d=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
		version=${d#v}
		version=${version//-/+}
	else
		version="0.0.$(git rev-list --count HEAD)+g$(git rev-parse --short HEAD)"
		git diff --quiet HEAD 2>/dev/null || version+="+dirty"
	fi
fi
arch=$(dpkg --print-architecture)
# The maintainer: DEB_MAINTAINER, else the author of the commit built.
maintainer=${DEB_MAINTAINER:-$(git log -1 --format='%an <%ae>' 2>/dev/null || echo 'basefs maintainers <basefs@example.org>')}
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/basefs
umask 022

# Binaries: PIE, no build paths, the version stamped in.
mkdir -p "$root/usr/bin"
export GOFLAGS="${GOFLAGS:-} -tags=netgo,osusergo -trimpath -buildmode=pie"
export CGO_CFLAGS="-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong" CGO_LDFLAGS="-Wl,-z,relro,-z,now"
ld="-s -w -linkmode=external -extldflags=-Wl,-z,relro,-z,now"
go build -ldflags "$ld -X main.version=$version" -o "$root/usr/bin/" ./cmd/basefs
go build -ldflags "$ld" -o "$root/usr/bin/" ./cmd/basefs-agent ./cmd/basefs-bench # cached across versions

# A manual page for each binary: its own help, verbatim.
for b in basefs basefs-agent basefs-bench; do
	mkdir -p "$root/usr/share/man/man1"
	{
		printf '.TH %s 1 "%s" "basefs %s" "User Commands"\n.SH NAME\n%s \\- ' "${b^^}" "$(date -u +%Y-%m-%d)" "$version" "$b"
		case $b in
		basefs) echo "the basefs host daemon and its admin commands" ;;
		basefs-agent) echo "boot and tear down instances on a basefs _base" ;;
		basefs-bench) echo "benchmarks of basefs against its baselines" ;;
		esac
		printf '.SH DESCRIPTION\n.nf\n'
		BASEFS_CONFIG= "$root/usr/bin/$b" --help 2>&1 | sed -e 's/\\/\\e/g' -e 's/^[.\x27]/\\\&&/'
		printf '.fi\n.SH SEE ALSO\n/usr/share/doc/basefs/README.md.gz\n'
	} | gzip -9n >"$root/usr/share/man/man1/$b.1.gz"
done

# Units, configuration, alert rules, documentation.
install -D -m 0644 packaging/systemd/basefs@.service "$root/lib/systemd/system/basefs@.service"
mkdir -p "$root/etc/basefs"
BASEFS_CONFIG= "$root/usr/bin/basefs" config --sample >"$root/etc/basefs/basefs.conf"
install -D -m 0644 packaging/basefs.rules.yml "$root/usr/share/basefs/prometheus/basefs.rules.yml"
doc=$root/usr/share/doc/basefs
install -D -m 0644 packaging/debian/copyright "$doc/copyright"
gzip -9nc README.md >"$doc/README.md.gz"
date=$(git log -1 --format=%aD 2>/dev/null || date -R)
printf 'basefs (%s) unstable; urgency=medium\n\n  * Built from git %s.\n\n -- %s  %s\n' \
	"$version" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" "$maintainer" "$date" | gzip -9n >"$doc/changelog.gz"

# Control: Depends from the ELF files (dpkg-shlibdeps) and the commands the binaries run.
mkdir -p "$root/DEBIAN" "$work/debian"
printf 'Source: basefs\n\nPackage: basefs\nArchitecture: any\n' >"$work/debian/control"
shlibs=$(cd "$work" && dpkg-shlibdeps -O "$root"/usr/bin/* 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<CONTROL
Package: basefs
Version: $version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Depends: ${shlibs:+$shlibs, }qemu-utils
Recommends: libvirt-daemon-system
Suggests: fio, libvirt-clients, qemu-system-x86, prometheus
Section: admin
Priority: optional
Homepage: https://github.com/basefs/basefs
Description: content-addressed, lazily fetched, verified VM base images for nova
 basefs serves OpenStack nova's instances/_base as a FUSE file system whose
 images are content-addressed, fetched lazily from Glance, a shared S3 tier or
 other origins, and verified chunk by chunk at every read. It includes the
 host daemon (basefs), an agent that boots libvirt domains on it
 (basefs-agent), the benchmark runner (basefs-bench), a systemd unit per
 mount point, a configuration file in nova's style and Prometheus alert rules.
CONTROL
echo /etc/basefs/basefs.conf >"$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"
done
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"

deb=$out/basefs_${version}_${arch}.deb
fakeroot dpkg-deb --build "-Z${DEB_COMPRESS:-xz}" --root-owner-group "$root" "$deb" >/dev/null
echo "$deb"
