// Package relay lets a FUSE connection outlive any one serving process on kernels without
// FUSE_NOTIFY_RESEND (before Linux 6.9; elsewhere package fs/handover does it with no relay on
// the data path, and basefs mount uses the relay only when the kernel refuses resend or
// --relay is given). The supervisor (basefs
// mount) opens /dev/fuse and mounts; a worker (basefs serve) runs go-fuse on its end of a
// SOCK_SEQPACKET socket pair, which keeps FUSE's one-message-per-read framing. The relay moves
// requests from the kernel to the current worker and replies back, remembering every request
// not yet answered. Because go-fuse must see INIT before anything else, the relay keeps the
// kernel's INIT and replays it to every later worker (swallowing its reply).
//
//   - Graceful restart (SIGHUP, basefs restart): a new worker starts and answers INIT; new
//     requests go to it; the old worker finishes what it holds, then is told to exit.
//     No request is lost or failed.
//   - Crash (the worker dies): a new worker starts at once; every request the dead one held
//     is sent to the new one. Lookups, attributes and reads are idempotent; the writable
//     area's create, rename and unlink are journaled by request id (package fs), so a resent
//     one is not applied twice. Readers see a pause, not an error.
//
// Node ids survive because they are deterministic and logged (fs.nodeTable); file handles
// carry nothing.
package relay
