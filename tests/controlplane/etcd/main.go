// Command etcd is the etcd server for the test control plane, built from the published
// go.etcd.io/etcd/server/v3 module (the repository's own main package lives in a module whose replace
// lines only work inside the etcd repository).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
