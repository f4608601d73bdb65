# shellcheck shell=bash
# Sourced by the scripts that start and stop processes: waiting for one, stopping one.

# alive PID: whether PID is a process that has not exited (a zombie has).
alive() {
	kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# stop_pid PID [GRACE [SIGNAL [group]]]: send SIGNAL (TERM) and give PID GRACE seconds (10)
# to exit, then SIGKILL — its whole process group with "group" (a service in a session of its
# own: uWSGI, oslo workers) — and up to 5 s more. Fails if PID is still there. The caller
# checks first that PID is the process it means.
stop_pid() {
	local pid=$1 grace=${2:-10} sig=${3:-TERM} scope=${4:-}
	kill "-$sig" "$pid" 2>/dev/null || true
	gone "$pid" $((grace * 10)) && return 0
	if [ "$scope" = group ]; then
		kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
	else
		kill -KILL "$pid" 2>/dev/null || true
	fi
	gone "$pid" 50
}

# gone PID N: whether PID has exited or exits within N tenths of a second.
gone() {
	local _i
	for ((_i = 0; _i < $2; _i++)); do
		alive "$1" || return 0
		sleep 0.1
	done
	! alive "$1"
}

# wait_until N CMD...: whether CMD succeeds now or within N tenths of a second (it is tried
# every tenth): for what gives no signal when it is ready (a port that answers, a pid file).
wait_until() {
	local _n=$1 _i
	shift
	for ((_i = 0; _i < _n; _i++)); do
		"$@" && return 0
		sleep 0.1
	done
	"$@"
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
