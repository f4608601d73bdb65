# shellcheck shell=bash
# Sourced by the set-up scripts: installing Debian packages.

# apt_install_missing TAG PKG...: installs those of the packages that are not installed yet
# (no recommends; waits up to 900 s for another apt to finish), saying which under TAG.
apt_install_missing() {
	local tag=$1 p
	shift
	local missing=()
	for p in "$@"; do
		if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
			missing+=("$p")
		fi
	done
	[ "${#missing[@]}" -gt 0 ] || return 0
	echo "$tag: installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 update -qq
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
