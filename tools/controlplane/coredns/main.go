// Command coredns is upstream CoreDNS with the few plugins the test cluster's DNS uses: names of Services
// and pods from the API server, health and readiness endpoints, a cache. There is deliberately no
// `forward` plugin: the test cluster has no upstream resolver and its DNS answers cluster names only.
// Fewer plugins also keep the first build short.
package main

import (
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"

	"github.com/coredns/coredns/coremain"
)

func main() {
	coremain.Run()
}
