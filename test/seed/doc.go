// Package seed holds the guest test of the seed media: a real Debian guest under qemu boots a
// seed made by `ksboot build-seed` (ISO and vfat) and the test proves, from the serial log and
// the guest's disk, that cloud-init took the seed and the agent ran for that node.
package seed
