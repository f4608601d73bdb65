package peer

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A peer request carries the header
//
//	X-Basefs-Peer: <unix seconds>.<hex HMAC-SHA256(key, METHOD " " PATH " " <unix seconds>)>
//
// with key = SHA-256("basefs peer http\x00" + fleet secret). A request is served only if the MAC
// is right and its time is within MaxSkew of the server's clock. Gossip uses another key
// derived the same way (memberlist's AES-GCM keyring).
const (
	authHeader = "X-Basefs-Peer"
	// MaxSkew is how far a request's time may be from the server's clock.
	MaxSkew = 60 * time.Second
	// MinSecret is the shortest fleet secret accepted.
	MinSecret = 16
)

func deriveKey(secret []byte, purpose string) []byte {
	h := sha256.New()
	h.Write([]byte("basefs " + purpose + "\x00"))
	h.Write(secret)
	return h.Sum(nil)
}

func mac(key []byte, method, path string, ts int64) []byte {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s %s %d", method, path, ts)
	return m.Sum(nil)
}

// sign sets the request's authentication header.
func sign(key []byte, r *http.Request, now time.Time) {
	ts := now.Unix()
	r.Header.Set(authHeader, strconv.FormatInt(ts, 10)+"."+hex.EncodeToString(mac(key, r.Method, r.URL.Path, ts)))
}

var errAuth = errors.New("peer request not authenticated")

// check verifies a request's authentication header.
func check(key []byte, r *http.Request, now time.Time) error {
	tss, sum, ok := strings.Cut(r.Header.Get(authHeader), ".")
	if !ok {
		return fmt.Errorf("%w: no %s header", errAuth, authHeader)
	}
	ts, err := strconv.ParseInt(tss, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: bad time", errAuth)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("%w: time %d is %s from this host's clock", errAuth, ts, d.Round(time.Second))
	}
	got, err := hex.DecodeString(sum)
	if err != nil || !hmac.Equal(got, mac(key, r.Method, r.URL.Path, ts)) {
		return fmt.Errorf("%w: wrong MAC (not a member of this fleet, or another secret)", errAuth)
	}
	return nil
}
