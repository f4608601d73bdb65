package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/aggregates"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/services"
	"github.com/gophercloud/gophercloud/v2/pagination"
	"golang.org/x/sys/unix"

	"github.com/basefs/basefs/cache"
	"github.com/basefs/basefs/cache/glanceimg"
	"github.com/basefs/basefs/chunkstore/glance/glanceref"
	"github.com/basefs/basefs/chunkstore/storetest"
)

// osPrecacheBytes is the image `openstack aggregate cache image` precaches (all data).
const osPrecacheBytes = 24 << 20

// precache is issue 25's step of the OpenStack test, in the cloud and basefs mount the test set
// up: an image no server uses is put in an aggregate's image cache with the real `openstack
// aggregate cache image` (compute API 2.81: nova-conductor → nova-compute → the libvirt
// driver's cache_image, which finds the base present on the mount and utimes it). Before any
// server boots from it, the image is wholly local (after the daemon's --precache-delay, 10 s) — every chunk present, st_blocks its size —
// fetched from Glance once, with no read of the mount. The aggregate goes at the end; nova's
// image cache manager later removes the unused base with the others.
func (c *osCloud) precache(d *daemon, work, base string, adminRC map[string]string) {
	t := c.t
	ctx := context.Background()
	t0 := time.Now()
	p := filepath.Join(work, "precache.raw")
	if err := os.WriteFile(p, storetest.Data(2530, osPrecacheBytes), 0o644); err != nil {
		t.Fatal(err)
	}
	id := c.upload("precache", "raw", "bare", p, nil)
	var host string
	services.List(c.compute, services.ListOpts{Binary: "nova-compute"}).EachPage(ctx, func(_ context.Context, pg pagination.Page) (bool, error) {
		ss, err := services.ExtractServices(pg)
		for _, s := range ss {
			host = s.Host
		}
		return true, err
	})
	if host == "" {
		t.Fatal("no nova-compute service listed")
	}
	agg, err := aggregates.Create(ctx, c.compute, aggregates.CreateOpts{Name: osTestPrefix + "precache"}).Extract()
	if err != nil {
		t.Fatalf("create aggregate: %v", err)
	}
	defer func() {
		aggregates.RemoveHost(ctx, c.compute, agg.ID, aggregates.RemoveHostOpts{Host: host})
		if err := aggregates.Delete(ctx, c.compute, agg.ID).ExtractErr(); err != nil {
			t.Errorf("delete aggregate %d: %v", agg.ID, err)
		}
	}()
	if _, err := aggregates.AddHost(ctx, c.compute, agg.ID, aggregates.AddHostOpts{Host: host}).Extract(); err != nil {
		t.Fatalf("add host %s to the aggregate: %v", host, err)
	}
	before := d.status()
	glanceLog := filepath.Join(c.dir, "log", "glance.log")
	off := fileSize(glanceLog)
	setupS := time.Since(t0)

	tCall := time.Now()
	cmd := exec.Command("openstack", "--os-compute-api-version", "2.81", "aggregate", "cache", "image", osTestPrefix+"precache", id)
	cmd.Env = osEnviron(adminRC)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openstack aggregate cache image: %v\n%s", err, out)
	}
	callS := time.Since(tCall)
	// nova-compute's cache_image runs after the call returned (conductor → compute, cast):
	// wait for basefs's precache fill to start and to end.
	// The image is provisional (raw, no manifest yet): the cache knows it by its key.
	key := glanceimg.ProvisionalKey(id)
	var fill cache.FillInfo
	for deadline := time.Now().Add(2 * time.Minute); fill.Reason != cache.FillPrecache || fill.Running; time.Sleep(200 * time.Millisecond) {
		for _, fi := range d.status().Fills {
			if fi.Image == key {
				fill = fi
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no precache ended within 2 min of the call: %+v\nnova-compute log:\n%s\nbasefs log:\n%s",
				fill, tail(filepath.Join(c.dir, "log", "nova-compute.log"), 30), d.log)
		}
	}
	localS := time.Since(tCall)
	after := d.status()
	served := glanceServed(t, glanceLog, off)
	name := glanceref.NovaName(id)
	var blocks int64
	for deadline := time.Now().Add(5 * time.Second); blocks < osPrecacheBytes && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		var st unix.Stat_t // st_blocks is counted at most once a second
		if err := unix.Stat(filepath.Join(base, name), &st); err != nil {
			t.Fatalf("stat of the precached base: %v", err)
		}
		blocks = st.Blocks * 512
	}
	compute := tail(filepath.Join(c.dir, "log", "nova-compute.log"), 200)
	t.Logf("openstack aggregate cache image (a %d MiB raw image no server uses): the call %.1f s; wholly local %.1f s after it (fill %+v); Glance served %.1f MiB for it; %d reads of the mount meanwhile; st_blocks %.1f MiB; set-up (upload, aggregate) %.1f s",
		osPrecacheBytes>>20, callS.Seconds(), localS.Seconds(), fill, mib(served[id]), after.Stats.Reads-before.Stats.Reads, mib(blocks), setupS.Seconds())
	if !strings.Contains(compute, "already cached; updating timestamp") {
		t.Errorf("nova-compute's log does not show its cache_image finding the base present:\n%s", compute)
	}
	if !fill.Complete || after.Stats.Reads != before.Stats.Reads {
		t.Errorf("precache: fill %+v, %d reads; want the image complete with no read", fill, after.Stats.Reads-before.Stats.Reads)
	}
	if s := served[id]; s < osPrecacheBytes || s > osPrecacheBytes+(1<<20) {
		t.Errorf("Glance's log has %d bytes served for the precached %d-byte image; want it once", s, osPrecacheBytes)
	}
	if blocks < osPrecacheBytes {
		t.Errorf("st_blocks of the precached base: %d bytes, want ≥ %d", blocks, osPrecacheBytes)
	}
}
