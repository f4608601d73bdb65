// Package daemon is the basefs serving process, `basefs serve`: one Daemon built whole by New
// from the mount's settings — the cache and its manager, Glance's images (cache/glanceimg), the
// peer tier, the file system (fs), the control API server and the Prometheus metrics — before
// any of it serves; then ServeDirect (the FUSE connection itself, fs/handover) or ServeRelayed
// (through fs/relay) starts it all and serves until SIGTERM, the end of the connection, or a
// handover. No part is set after serving began: a request never finds one missing.
//
// The control API (its wire types and client: package control, a leaf every part may import)
// is served on the unix socket the supervisor created and shares across serving processes.
// Only root and the mount's owner may use it: Listen creates it 0600, and every connection's
// peer is checked (SO_PEERCRED, peer.go). Restart is root's alone and is answered by the
// supervisor (restart.go): the serving process passes the client's connection to the
// supervisor's restart desk, which restarts and answers on it — the new process, or the
// error at once — since the process that took the request is the one that goes.
//
// Layers: above cache, cache/glanceimg and fs; below cmd/basefs; no libvirt
// (chunkstore/testenv/layers_test.go).
package daemon
