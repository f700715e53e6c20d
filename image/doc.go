// Package image writes finished seed file sets to the media a machine boots
// with: an ISO9660 volume labelled "cidata" (WriteISO), a FAT image labelled
// "CIDATA" (WriteVFAT), a plain directory tree for PXE and cloud user-data
// (WriteDir), and an HTTP handler that serves such a tree to cloud-init's
// nocloud-net data source (Handler).
//
// The package only packs. It never decides what goes into a seed: the caller
// hands over names, bytes and permission bits, and gets them back unchanged
// from the medium. Empty files are refused: an empty seed file is always a
// mistake upstream, and refusing it here reports it on the build host
// instead of on a machine that fails to boot into the cluster.
//
// Seeds carry secrets, so every output file is created 0600 and directories
// 0700. Outputs are written atomically: the medium is built in a temporary
// file in the target directory, synced and renamed into place, and on any
// error nothing is left behind.
//
// The same files and the same Options.ModTime give byte-identical ISO and
// FAT images, so seeds can be rebuilt and compared (SOURCE_DATE_EPOCH, see
// SourceDateEpoch). The ISO and FAT layouts come from
// github.com/diskfs/go-diskfs; the places where that library stamps the
// build time, the building user, the host's time zone or a zero-padded
// identifier into the image are normalised afterwards by this package; the
// comments on normalizeISO and normalizeFAT list them. Three go-diskfs
// defects are worked around as well: a stray block of zeros that can wipe
// the Joliet directory, FAT32 tables one entry too short for some sizes,
// and a FAT12/16 cluster that fsck.fat reports as lost.
package image
