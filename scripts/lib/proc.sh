# shellcheck shell=bash
# Sourced by the scripts that stop what they started: stopping one process.

# stop_pid PID: SIGTERM, up to 10 s for PID to exit, then SIGKILL and up to 2 s more. Fails
# if PID is still there. The caller checks first that PID is the process it means.
stop_pid() {
	kill -TERM "$1" 2>/dev/null || true
	gone "$1" 100 && return 0
	kill -KILL "$1" 2>/dev/null || true
	gone "$1" 20
}

# gone PID N: whether PID has exited or exits within N tenths of a second.
gone() {
	local _i
	for ((_i = 0; _i < $2; _i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	! kill -0 "$1" 2>/dev/null
}
