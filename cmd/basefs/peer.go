package main

import (
	"fmt"
	"net"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/basefs/basefs/chunkstore/peer"
)

// peerOptions configure the peer tier (package chunkstore/peer): off unless --peer-addr is set.
type peerOptions struct {
	addr       string
	gossipPort int
	join       []string
	secretFile string
	timeout    time.Duration
	owners     int
}

func (o *peerOptions) AddFlags(f *pflag.FlagSet) {
	f.StringVar(&o.addr, "peer-addr", "", "`IP:PORT` this host's peer server listens on and the others reach: turns the peer tier on, asked before every --origin (empty: off)")
	f.IntVar(&o.gossipPort, "peer-gossip-port", 7946, "memberlist port (UDP and TCP) on --peer-addr's IP")
	f.StringArrayVar(&o.join, "peer-join", nil, "`IP:PORT` gossip address of a fleet member to join (repeatable; retried until one answers)")
	f.StringVar(&o.secretFile, "peer-secret-file", "", "file holding the fleet secret (at least 16 bytes, the same on every host): keys the gossip and authenticates every peer request")
	f.DurationVar(&o.timeout, "peer-timeout", 2*time.Second, "bound on one chunk request to one peer; then the next owner, then the next origin")
	f.IntVar(&o.owners, "peer-owners", 2, "ranked owners asked for a chunk before the next origin")
}

func (o *peerOptions) on() bool { return o.addr != "" }

// validate refuses settings that mean nothing; a peer setting without --peer-addr is an error,
// not ignored.
func (o *peerOptions) validate() error {
	if !o.on() {
		if o.secretFile != "" || len(o.join) > 0 {
			return usageError{Msg: "--peer-join and --peer-secret-file need --peer-addr (the peer tier is off without it)"}
		}
		return nil
	}
	if host, _, err := net.SplitHostPort(o.addr); err != nil || net.ParseIP(host) == nil || net.ParseIP(host).IsUnspecified() {
		return usageError{Msg: fmt.Sprintf("--peer-addr %q: want IP:PORT with a concrete IP the other hosts reach (it is advertised to them)", o.addr)}
	}
	if o.secretFile == "" {
		return usageError{Msg: "--peer-addr needs --peer-secret-file: only fleet members may read a host's peer port"}
	}
	if o.timeout <= 0 || o.owners < 1 || o.gossipPort < 0 || o.gossipPort > 65535 {
		return usageError{Msg: fmt.Sprintf("--peer-timeout %s, --peer-owners %d, --peer-gossip-port %d: want a positive timeout, at least 1 owner and a port", o.timeout, o.owners, o.gossipPort)}
	}
	_, err := o.secret()
	return err
}

func (o *peerOptions) secret() ([]byte, error) {
	st, err := os.Stat(o.secretFile)
	if err != nil {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file: %v", err)}
	}
	if st.Size() > 4096 {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file %s: %d bytes, more than 4096: not a secret file", o.secretFile, st.Size())}
	}
	b, err := os.ReadFile(o.secretFile)
	if err != nil {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file: %v", err)}
	}
	if len(b) < peer.MinSecret {
		return nil, usageError{Msg: fmt.Sprintf("--peer-secret-file %s: %d bytes; at least %d are needed", o.secretFile, len(b), peer.MinSecret)}
	}
	return b, nil
}

// config returns the peer tier's configuration (nil: off).
func (o *peerOptions) config() (*peer.Config, error) {
	if !o.on() {
		return nil, nil
	}
	s, err := o.secret()
	if err != nil {
		return nil, err
	}
	return &peer.Config{Addr: o.addr, GossipPort: o.gossipPort, Join: o.join, Secret: s,
		Timeout: o.timeout, Owners: o.owners, MaxManifest: peer.DefaultMaxManifest}, nil
}
