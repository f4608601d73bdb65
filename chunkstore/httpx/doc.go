// Package httpx is the one client discipline of basefs's network backends (httpstore, s3,
// glance): how many times a request is tried and how long to wait between tries (Policy, Do),
// which failures are worth another try (Transient, TransientStatus), stall detection on a body
// (Stall) and bodies read whole within a bound (ReadBody). Each backend keeps only what is its
// own: its status codes and error types.
package httpx
