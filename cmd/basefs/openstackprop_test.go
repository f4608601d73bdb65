package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/image/v2/images"

	"github.com/basefs/basefs/agent/agenttest"
	"github.com/basefs/basefs/chunkstore/glance"
	"github.com/basefs/basefs/chunkstore/storetest"
	"github.com/basefs/basefs/chunkstore/testenv"
)

// TestOpenStackManifestPropertyProtected: in the Keystone Glance of start-openstack.sh, only
// the basefs role may write basefs_manifest — the value basefs hosts trust for an image's
// manifest. The admin user (roles admin/member/reader, not basefs: what a tenant's roles
// are, and more) owns an image and is refused (403) when it sets or changes the property;
// its other properties are still its own; the basefs service user sets it.
func TestOpenStackManifestPropertyProtected(t *testing.T) {
	agenttest.Need(t)
	testenv.NeedBinary(t, "apt-get", "dpkg-query", "flock", "curl")
	if _, err := os.Stat("/usr/bin/python3"); err != nil {
		testenv.Skip(t, "Debian's /usr/bin/python3 is missing (OpenStack runs on it)")
	}
	start := time.Now()
	c := newOSCloud(t)
	c.leftovers()
	c.writeExtra("")
	up, _ := c.start(false)
	t.Cleanup(c.stopAll)
	adminRC := readOpenrc(t, filepath.Join(c.dir, "openrc"))
	basefsRC := readOpenrc(t, filepath.Join(c.dir, "openrc-basefs"))
	c.connect(adminRC)
	t.Cleanup(c.deleteAll)
	raw := filepath.Join(t.TempDir(), "img.raw")
	if err := os.WriteFile(raw, storetest.Data(2403, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	id := c.upload("prop", "raw", "bare", raw, nil)
	ctx := context.Background()
	set := func(sc *gophercloud.ServiceClient, name, value string) error {
		_, err := images.Update(ctx, sc, id, images.UpdateOpts{
			images.UpdateImageProperty{Op: images.AddOp, Name: "/" + name, Value: value}}).Extract()
		return err
	}
	forged := "f5656a67f5a186b936785eb1d2105518cc7e7f7333148bc6ad8d124f9130e98f"
	if err := set(c.image, glance.ManifestProperty, forged); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Fatalf("the image's owner (no basefs role) set %s: %v; want 403", glance.ManifestProperty, err)
	}
	if err := set(c.image, "x_basefs_test", "ok"); err != nil {
		t.Fatalf("the owner's other properties: %v", err)
	}
	pc, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: basefsRC["OS_AUTH_URL"], Username: basefsRC["OS_USERNAME"], Password: basefsRC["OS_PASSWORD"],
		DomainName: basefsRC["OS_USER_DOMAIN_NAME"], TenantID: basefsRC["OS_PROJECT_ID"],
	})
	if err != nil {
		t.Fatalf("Keystone (basefs): %v", err)
	}
	svc, err := openstack.NewImageV2(pc, gophercloud.EndpointOpts{Region: basefsRC["OS_REGION_NAME"]})
	if err != nil {
		t.Fatal(err)
	}
	want := "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	if err := set(svc, glance.ManifestProperty, want); err != nil {
		t.Fatalf("the basefs service user set %s: %v", glance.ManifestProperty, err)
	}
	if err := set(c.image, glance.ManifestProperty, forged); !gophercloud.ResponseCodeIs(err, http.StatusForbidden) {
		t.Fatalf("the owner changed %s: %v; want 403", glance.ManifestProperty, err)
	}
	im, err := images.Get(ctx, c.image, id).Extract()
	if err != nil || im.Properties[glance.ManifestProperty] != want {
		t.Fatalf("%s is %v (%v); want %s", glance.ManifestProperty, im.Properties[glance.ManifestProperty], err, want)
	}
	t.Logf("property protections hold (start-openstack.sh without nova-compute %.1f s; whole test %.1f s)", up.Seconds(), time.Since(start).Seconds())
}
