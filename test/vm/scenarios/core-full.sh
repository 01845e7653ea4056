# shellcheck shell=sh disable=SC2046 # $(deps_of ...) is a list of module names
# Scenario: everything modloadctl --local does with a real kernel, in one
# boot. Needs /etc/modprobe.d/core-test.conf (fixtures/modprobe.d), the bad
# modules in /fixtures (made by test-vm-core.py) and the kernel command line
#   loop.max_loop=5 modprobe.blacklist=nlmon module_blacklist=ifb
# $KERNEL_DECOMPRESS=1 when the kernel decompresses the tree's format itself.
# Output: see core-lib.sh.
# shellcheck source=core-lib.sh disable=SC1091
. /core-lib.sh
BASE=$(snap)
echo "@@INFO kernel=$KV compression=$(cat /sys/module/compression 2>/dev/null || echo none) tree=${TREE:-?} cmdline=$(cat /proc/cmdline)"
if [ "${KERNEL_DECOMPRESS:-0}" = 1 ]; then default_mode="file"; else default_mode="memfd"; fi
MODALIAS=pci:v00001B36d00000011sv00001AF4sd00001100bc08sc80i00  # QEMU pvpanic

# --- bad input changes nothing -----------------------------------------------
begin notfound
mc load --local no_such_module_xyz
want_rc 1; want_result notFound; want_calls 0; want_unchanged
end

begin badname-slash
mc load --local a/b
want_rc 1; want_result failed; want_stderr "Invalid module name"; want_calls 0; want_unchanged
end

begin badname-control
mc load --local "$(printf 'a\001b')"
want_rc 1; want_result failed; want_stderr "Invalid module name"; want_calls 0; want_unchanged
end

# a truncated .ko.xz by absolute path: decompression fails before any kernel call
begin truncated
mc load --local --policy=userspace /fixtures/truncated.ko.xz
want_rc 1; want_result failed; want_calls 0; want_unchanged
end "$(cat /tmp/err)"

if [ "$default_mode" = file ]; then
        # the kernel gets the file and finds out itself
        begin truncated-kernel
        mc load --local /fixtures/truncated.ko.xz
        want_rc 1; want_result failed; want_calls 1; want_unchanged
        end "$(cat /tmp/err)"
else
        # a kernel that cannot decompress refuses a compressed file: nothing changes
        begin policy-kernel-unsupported
        mc load --local --policy=kernel dummy
        want_rc 1; want_result failed; want_calls 1; want_absent dummy; want_unchanged
        end "$(cat /tmp/err)"
fi

# a valid xz holding garbage behind an ELF magic: the kernel says ENOEXEC
begin corrupt
mc load --local --json /fixtures/corrupt.ko.xz
want_rc 1; want_calls 1; want_unchanged
grep -q '"result": *"failed"' /tmp/out || err "result is not failed"
grep -q '"errnoName": *"ENOEXEC"' /tmp/out || err "errnoName is not ENOEXEC"
grep -q '"message": *"[^"]*Invalid module format' /tmp/out || err "message lacks 'Invalid module format'"
end "$(grep -o '"message": *"[^"]*"' /tmp/out)"

# --- btrfs and its dependencies -------------------------------------------------
btrfs_load btrfs-default "$default_mode"

begin live
mc load --local btrfs
want_rc 0; want_result live; want_calls 0; want_unchanged
mc load --local xor
want_rc 0; want_result live; want_calls 0; want_unchanged
end

begin first-time-live
mc load --local --first-time xor
want_rc 1; want_result failed; want_unchanged
[ "$T_FINIT_OK" = 0 ] || err "$T_FINIT_OK successful kernel calls"
end "$T_CALLS kernel calls; $(cat /tmp/err)"

begin dry-run
mc load --local -n dummy
want_rc 0; want_result dryRun; want_calls 0; want_absent dummy; want_unchanged
end

begin unload-holder-inuse
mc unload --local xor
want_rc 1; want_result inUse; want_loaded xor btrfs; want_unchanged
end "$(cat /tmp/err)"

begin unload-remove-holders
mc unload --local --remove-holders xor
want_rc 0; want_result removed; want_absent xor btrfs
end "left: $(snap)"
reset_to "$BASE"

btrfs_load btrfs-userspace memfd --policy=userspace
btrfs_unload btrfs-unload "$BASE"

begin alias-fs-btrfs
mc load --local fs-btrfs
want_rc 0; want_result inserted; want_loaded btrfs $(deps_of btrfs)
want_stdout btrfs
end
reset_to "$BASE"

# --- other ways of naming a module --------------------------------------------------
begin modalias
mc load --local "$MODALIAS"
want_rc 0; want_result inserted; want_loaded pvpanic_pci pvpanic
end "$(awk 'NR == 2 {print $4, $5}' /tmp/out)"
reset_to "$BASE"

begin symbol
mc load --local symbol:tcp_vegas_init
want_rc 0; want_result inserted; want_loaded tcp_vegas; want_calls 1
end
reset_to "$BASE"

begin builtin
mc load --local ext4
want_rc 0; want_result builtin; want_calls 0; want_unchanged
! grep -q '^ext4 ' /proc/modules || err "ext4 in /proc/modules"
end

begin unload-notloaded
mc unload --local dummy
want_rc 0; want_result notLoaded; want_unchanged
end

# --- modprobe.d ---------------------------------------------------------------------
begin config-alias
mc load --local my-alias
want_rc 0; want_result inserted; want_loaded dummy
end
reset_to "$BASE"

begin config-options
mc load --local nbd
want_rc 0; want_result inserted; want_loaded nbd; want_param nbd nbds_max 3
end
reset_to "$BASE"

begin cmdline-options
mc load --local loop
want_rc 0; want_result inserted; want_loaded loop; want_param loop max_loop 5
end

# a module with a bound device reports inUse and stays
begin unload-inuse-refcnt
dd if=/dev/zero of=/tmp/loop.img bs=1024 count=1024 2>/dev/null
if losetup /dev/loop0 /tmp/loop.img; then
        refcnt=$(cat /sys/module/loop/refcnt)
        [ "$refcnt" -gt 0 ] 2>/dev/null || err "loop refcnt is '$refcnt' with a bound device"
        mc unload --local loop
        want_rc 1; want_result inUse; want_loaded loop; want_unchanged
        want_stderr "in use"
        losetup -d /dev/loop0
        mc unload --local loop
        want_rc 0; want_result removed; want_absent loop
else
        err "losetup /dev/loop0 failed"
fi
end "refcnt $refcnt"
reset_to "$BASE"

begin blacklist-alias
mc load --local rtnl-link-veth
want_rc 1; want_result blacklisted; want_calls 0; want_absent veth; want_unchanged
end

begin blacklist-config-alias
mc load --local my-veth
want_rc 1; want_result blacklisted; want_calls 0; want_absent veth; want_unchanged
end

begin blacklist-name
mc load --local veth
want_rc 0; want_result inserted; want_loaded veth
reset_to "$BASE"
BEFORE=$(snap)
mc load --local -b veth
want_rc 1; want_result blacklisted; want_calls 0; want_absent veth; want_unchanged
end
reset_to "$BASE"

begin softdep
mc load --local tcp_htcp
want_rc 0; want_result inserted; want_loaded dummy tcp_htcp tun
[ "$T_ORDER" = "dummy tcp_htcp tun" ] || err "load order '$T_ORDER', want 'dummy tcp_htcp tun'"
end "order: $T_ORDER"
reset_to "$BASE"

begin install-command
rm -f /tmp/install-ran
mc load --local brd
want_rc 0; want_calls 0; want_absent brd; want_unchanged
[ "$(cat /tmp/install-ran 2>/dev/null)" = ran ] || err "install command did not run"
end "result $RESULT"

begin install-ignored
rm -f /tmp/install-ran
mc load --local -i brd
want_rc 0; want_result inserted; want_loaded brd; want_calls 1
[ ! -e /tmp/install-ran ] || err "install command ran with -i"
end
reset_to "$BASE"

# --- the kernel command line --------------------------------------------------------
begin cmdline-modprobe-blacklist
mc load --local rtnl-link-nlmon
want_rc 1; want_result blacklisted; want_calls 0; want_absent nlmon
mc load --local -b nlmon
want_rc 1; want_result blacklisted; want_calls 0; want_absent nlmon
mc load --local nlmon
want_rc 0; want_result inserted; want_loaded nlmon
end
reset_to "$BASE"

begin cmdline-module-blacklist
mc load --local --json ifb
want_rc 1; want_calls 1; want_absent ifb; want_unchanged
grep -q '"result": *"failed"' /tmp/out || err "result is not failed"
grep -q '"errnoName": *"EPERM"' /tmp/out || err "errnoName is not EPERM"
grep -q '"message": *"[^"]*deny-listed by the kernel' /tmp/out || err "message lacks 'deny-listed by the kernel'"
end "$(grep -o '"message": *"[^"]*"' /tmp/out)"

echo "@@DONE failed=$FAILED_CASES"
[ "$FAILED_CASES" = 0 ]
