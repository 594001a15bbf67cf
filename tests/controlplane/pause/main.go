// The pod sandbox ("pause") process of the test cluster: it holds a pod's namespaces open and
// does nothing else until it is told to stop. The cluster test cannot pull registry.k8s.io/pause,
// so scripts/toolchain.sh --cluster builds this and assembles it into an image with buildah.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of a pod's PID namespace it also inherits orphans; reap them so none stays a zombie.
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
