# shellcheck shell=sh
# Scenario: btrfs and its dependency chain from a compressed tree, with the
# default policy and with --policy=userspace, unloading in between.
# $KERNEL_DECOMPRESS=1 when the kernel takes the tree's format itself (the
# default policy then hands it the file); otherwise every load goes through
# a sealed memfd. Output: see core-lib.sh.
# shellcheck source=core-lib.sh disable=SC1091
. /core-lib.sh
BASE=$(snap)
echo "@@INFO kernel=$KV compression=$(cat /sys/module/compression 2>/dev/null || echo none) tree=${TREE:-?}"

if [ "${KERNEL_DECOMPRESS:-0}" = 1 ]; then default_mode="file"; else default_mode="memfd"; fi
btrfs_load btrfs-default "$default_mode"
btrfs_unload btrfs-unload "$BASE"
btrfs_load btrfs-userspace memfd --policy=userspace
btrfs_unload btrfs-unload-userspace "$BASE"

echo "@@DONE failed=$FAILED_CASES"
[ "$FAILED_CASES" = 0 ]
