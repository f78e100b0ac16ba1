// Command etcd is the etcd server at the version Kubernetes itself pins,
// built from the same module graph as the API server it serves.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
