package agent_test

import (
	"testing"

	"github.com/basefs/basefs/agent/agenttest"
)

func TestMain(m *testing.M) { agenttest.Main(m) }
