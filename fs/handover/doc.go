// Package handover lets a FUSE connection outlive any one basefs process, with no process
// between the kernel and the one that serves it. The supervisor (basefs mount) opens
// /dev/fuse and mounts (Mount), reads the kernel's INIT and keeps the descriptor; the serving process
// (basefs serve) gets the same descriptor and reads and answers it itself (go-fuse). Both
// hold it, so the death of either leaves the connection in place:
//
//   - go-fuse must see INIT before anything else: each serving process is given the saved
//     INIT on a socket pair, answers it there (only the first one's answer goes to the kernel)
//     and then that descriptor number is made to name the connection (Attach).
//   - Requests a process read and did not answer are not lost when it goes: the next one asks
//     the kernel to queue them again (FUSE_NOTIFY_RESEND, Linux ≥ 6.9; Resend) before it
//     serves. Lookups, attributes and reads are idempotent; the writable area's create,
//     rename, unlink and link are journaled by request id (package fs), so a resent one is not
//     applied twice.
//   - Graceful restart or upgrade: a new serving process attaches; the old one finishes what
//     it holds and exits; the kernel resends anything it read last; the new one serves.
//   - The serving process dies: the supervisor starts another at once (readers see a pause).
//   - The supervisor dies: the serving process keeps serving and starts a supervisor that
//     adopts it (Server.Run), so the next death is survived too.
//
// The link between the two is a SOCK_SEQPACKET socket pair (link.go). A kernel without
// FUSE_NOTIFY_RESEND is detected at mount (Probe); basefs then relays (package fs/relay).
// Starting, watching and stopping the processes is chunkstore/child's (StartPaired, Retry,
// Stop), shared with the relay. The tests run the protocol on a real mount with the test
// binary re-executed as serving process and supervisor.
package handover
