package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
)

// notifyReady tells systemd (Type=notify) that the file system is mounted: from then on a
// process that looks at the mount point (nova-compute, ordered after the unit) finds the
// mount, its requests waiting for the serving process if it is still starting.
func notifyReady(log *slog.Logger) { sdNotify(log, fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid())) }

// notifyMainPID tells systemd that this supervisor (adopted after the last one died) is the
// unit's main process now (the unit has NotifyAccess=all).
func notifyMainPID(log *slog.Logger) { sdNotify(log, fmt.Sprintf("MAINPID=%d", os.Getpid())) }

// sdNotify sends state to $NOTIFY_SOCKET, if set (sd_notify(3)); nothing otherwise.
func sdNotify(log *slog.Logger, state string) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	if sock[0] == '@' {
		sock = "\x00" + sock[1:] // an abstract socket
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err == nil {
		_, err = c.Write([]byte(state))
		c.Close()
	}
	if err != nil {
		log.Warn("cannot notify systemd", "socket", os.Getenv("NOTIFY_SOCKET"), "err", err)
	}
}
