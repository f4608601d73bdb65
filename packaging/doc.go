// Package packaging holds no code: its tests check what an operator installs — the Debian
// package scripts/build-deb.sh builds (contents, Depends, lintian), the systemd unit
// (systemd-analyze verify, and its ExecStart/ExecReload/ExecStop lines run as written), an
// upgrade with dpkg -i under a running guest, and the Prometheus alert rules (promtool, and a
// real Prometheus scraping a real daemon for every metric they name).
package packaging
