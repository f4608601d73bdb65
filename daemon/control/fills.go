package control

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/basefs/basefs/cache/report"
	"github.com/basefs/basefs/chunkstore"
)

// Prefetch asks the daemon to fetch the whole image called name (a digest or nova's name) in
// the background, and returns the fill's progress (a running fill of the image is joined).
func (c *Client) Prefetch(ctx context.Context, name string) (*report.FillInfo, error) {
	var fi report.FillInfo
	if err := c.do(ctx, http.MethodPost, "/v1/prefetch/"+url.PathEscape(name), &fi); err != nil {
		return nil, err
	}
	return &fi, nil
}

// Fill returns the progress of image d's last fill (d: FillInfo.Image); with wait, once it
// has ended (ctx bounds the wait).
func (c *Client) Fill(ctx context.Context, d chunkstore.Digest, wait bool) (*report.FillInfo, error) {
	var fi report.FillInfo
	path := "/v1/fills/" + d.String()
	if wait {
		path += "?wait=1"
	}
	if err := c.do(ctx, http.MethodGet, path, &fi); err != nil {
		return nil, err
	}
	return &fi, nil
}

// CPUProfile records the serving process's CPU profile for d (whole seconds, at least one)
// and writes it to w in pprof's format (gzipped protocol buffers; `go tool pprof` reads it).
// During a graceful restart either serving process may answer.
func (c *Client) CPUProfile(ctx context.Context, d time.Duration, w io.Writer) error {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	resp, err := c.send(ctx, http.MethodGet, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs))
	if err != nil {
		return fmt.Errorf("CPU profile: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("CPU profile from the basefs daemon at %s: %w", c.socket, err)
	}
	return nil
}
