// Command ksboot installs KubeSphere clusters whose nodes bootstrap themselves from cloud-init seeds.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
