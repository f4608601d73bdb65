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

# port_free PORT: whether nothing accepts connections on 127.0.0.1:PORT.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# port_holder PORT: who listens on PORT (any local address), for the message of a start script
# that finds its port taken: "pid 123 (glance-api --config-file …)", or, when no listening
# socket of a visible process has it, "a process of another namespace or user".
port_holder() {
	local hex ino fd pid
	hex=$(printf '%04X' "$1")
	for ino in $(awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' /proc/net/tcp /proc/net/tcp6 2>/dev/null); do
		fd=$(find /proc/[0-9]*/fd -lname "socket:\[$ino\]" -print -quit 2>/dev/null)
		[ -n "$fd" ] || continue
		pid=${fd#/proc/}
		pid=${pid%%/*}
		echo "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-160 | sed 's/ $//'))"
		return 0
	done
	echo "a process of another namespace or user"
}

# port_taken_die PORT WHAT VARIABLE: stop the script, saying what holds PORT and how to choose
# another (VARIABLE is the setting that names the port).
port_taken_die() {
	die "127.0.0.1:$1 (for $2) is already in use by $(port_holder "$1"): stop that process, or choose another port with $3=<port>"
}
