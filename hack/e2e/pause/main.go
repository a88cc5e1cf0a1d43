// Command pause is the e2e node's sandbox ("pause") image: it holds a pod's
// namespaces and waits for SIGTERM, as registry.k8s.io/pause does. The node
// has no registry to pull the real one from.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
