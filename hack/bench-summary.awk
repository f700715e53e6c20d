# Summarises `go test -bench` output: prints every benchmark line, then the ratio of ksboot's
# build-seed time to cloud-localds/genisoimage doing the same job in the same run.
{ print }
/^Benchmark/ {
  name = $1; sub(/-[0-9]+$/, "", name); ns[name] = $3
}
END {
  a = ns["BenchmarkSeeds100/ksboot-iso"]; b = ns["BenchmarkSeeds100/genisoimage-iso-with-agent"]
  c = ns["BenchmarkSeeds100/cloud-localds-iso"]
  if (a && b) printf "\nbuild-seed ISO (100 hosts, 11 MB agent): %.2f s; genisoimage with the same files: %.2f s; ratio ksboot/genisoimage = %.2f\n", a/1e9, b/1e9, a/b
  if (a && c) printf "cloud-localds without the agent (all it can carry): %.2f s; ratio ksboot/cloud-localds = %.2f\n", c/1e9, a/c
  u = ns["BenchmarkSeeds100/ksboot-user-data"]
  if (u && c) printf "build-seed user-data (100 hosts): %.2f s; ratio to cloud-localds = %.2f\n", u/1e9, u/c
}
