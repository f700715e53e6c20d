// Package bundle lays out, once and cached, an offline bundle directory made from artifacts
// built here from their Go modules (hack/build-artifacts.sh, hack/build-images.sh) and the
// Debian packages a guest image lacks, for the guest tests (test/install, test/e2e). Only tests
// import it.
package bundle
