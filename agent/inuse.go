package agent

import (
	"context"

	"github.com/basefs/basefs/agent/nova"
	"github.com/basefs/basefs/chunkstore"
)

// InUseImages returns which images back which instances under instancesPath, the way nova's
// image cache manager finds the bases in use (nova.InUseImages).
func InUseImages(instancesPath string) (map[chunkstore.Digest][]string, error) {
	return nova.InUseImages(context.Background(), instancesPath)
}
