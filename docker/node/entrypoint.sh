#!/bin/sh
# A Swarm node's dockerd, in the foreground, on the node's own data root (/var/lib/docker, a
# volume). The node runs without --privileged (this machine's engine lacks CAP_SYS_RESOURCE,
# which --privileged asks for) but with every other capability: Docker mounts the node's
# cgroups read-only, so they are remounted read-write first (each is the node's own subtree).
# Extra arguments go to dockerd.
set -e
for hierarchy in /sys/fs/cgroup/*/; do
    mount -o remount,bind,rw "$hierarchy" 2>/dev/null || true
done
# a node killed and started again: its runtime state is still there (not on a tmpfs, as a
# booted host's is). Stale pid files name other processes now: containerd's made dockerd wait
# for a containerd that was not there ("timeout waiting for containerd to start")
rm -rf /var/run/docker.pid /var/run/docker
exec dockerd --host unix:///var/run/docker.sock --data-root /var/lib/docker "$@"
