# shellcheck shell=sh disable=SC2086,SC2046 # module lists are words by design
# Helpers for the core-*.sh scenarios (sourced; busybox sh).
#
# Every case runs modloadctl in-process (--local) under strace, then checks
# the exit status, the result column, /proc/modules, /sys/module and the
# kernel calls, and prints one line the host parses:
#   @@CASE <name> PASS|FAIL <detail>
# Figures go on "@@FIG <name> key=value..." lines, and the bytes written into
# each module's memfd on "@@BYTES <name> <module> <bytes>" lines (the host
# compares them with the decompressed size of the module file).
MC=/usr/bin/modloadctl
ST=/usr/bin/strace
KV=$(uname -r)
D=/lib/modules/$KV
FAILED_CASES=0

# No console noise in the middle of our lines, and no kernel-initiated
# request_module() going through busybox's modprobe behind our back.
echo 1 >/proc/sys/kernel/printk 2>/dev/null
echo >/proc/sys/kernel/modprobe 2>/dev/null

. /vm-lib.sh
mod_count() { grep -c . /proc/modules; }
ms() { awk '{printf "%d\n", $1 * 1000}' /proc/uptime; }

# modules.dep's transitive dependencies of module $1, underscores, deps only
deps_of() {
        grep "^[^:]*/$1\.ko[^:]*:" "$D/modules.dep" | sed 's/^[^:]*://' | tr ' ' '\n' |
                sed -n 's|.*/||; s|\.ko.*||; s|-|_|g; /./p' | tr '\n' ' '
}

# --- one case ---------------------------------------------------------------
begin() {
        CASE=$1
        ERRS=""
        BEFORE=$(snap)
        T0=$(ms)
}
err() { ERRS="$ERRS${ERRS:+; }$*"; }
end() {
        t=$(($(ms) - T0))
        detail=$(printf '%s' "${1:-ok}" | tr '\n' ' ')
        if [ -z "$ERRS" ]; then
                echo "@@CASE $CASE PASS $detail (${t}ms)"
        else
                FAILED_CASES=$((FAILED_CASES + 1))
                echo "@@CASE $CASE FAIL $ERRS"
                echo "  | exit status $RC; stdout:"
                sed 's/^/  |   /' /tmp/out
                echo "  | stderr:"
                sed 's/^/  |   /' /tmp/err
                echo "  | trace:"
                grep -v ' write(' /tmp/trace 2>/dev/null | sed 's/^/  |   /' | tail -n 40
                echo "  | /proc/modules: $(snap)"
                dmesg | tail -n 5 | sed 's/^/  | dmesg: /'
        fi
}

# mc ARGS...: modloadctl ARGS under strace; sets RC, RESULT (first row's
# result column) and the T_* trace figures (see summarise)
mc() {
        rm -f /tmp/trace
        $ST -f -qq -y -s 1 -e signal=none \
                -e trace=init_module,finit_module,delete_module,memfd_create,write,fcntl \
                -o /tmp/trace $MC "$@" >/tmp/out 2>/tmp/err
        RC=$?
        RESULT=$(awk 'NR == 2 {print $2}' /tmp/out)
        eval "$(summarise /tmp/trace)"
        # a sanitizer build reports on stderr
        ! grep -qE '^==[0-9]+==ERROR|runtime error:|Sanitizer' /tmp/err || err "sanitizer report: $*"
}

# The kernel calls in an strace -f -y log. With -f a call may be split into
# "name(args <unfinished ...>" and "<... name resumed>rest" lines: join them
# per pid first. Prints shell assignments:
#   T_CALLS (init_module + finit_module), T_FINIT, T_FINIT_OK (returned 0),
#   T_ERRORS ("module:ERRNO ..." of the finit_module calls that failed),
#   T_INIT, T_DELETE,
#   T_COMPRESSED (finit_module with MODULE_INIT_COMPRESSED_FILE), T_EEXIST,
#   T_MEMFD (finit_module on a memfd), T_FILE (on a module file),
#   T_SEALED (memfds sealed against write, shrink and growth),
#   T_ORDER (modules in finit_module order), T_BYTES ("module:bytes ..."
#   written into each memfd that went to finit_module)
summarise() {
        awk '
        function modname(s) {
                sub(/ \(deleted\)$/, "", s); sub(/.*\//, "", s); sub(/^memfd:/, "", s)
                sub(/\.ko.*$/, "", s); gsub(/-/, "_", s); return s
        }
        function fdname(s) {
                if (!match(s, /<[^>]*>/)) return ""
                return substr(s, RSTART + 1, RLENGTH - 2)
        }
        {
                pid = $1; sub(/^[0-9]+ +/, "")
                if ($0 ~ /<unfinished \.\.\.>$/) { sub(/ *<unfinished \.\.\.>$/, ""); pend[pid] = $0; next }
                if ($0 ~ /^<\.\.\. [a-z_0-9]+ resumed>/) { sub(/^<\.\.\. [a-z_0-9]+ resumed>/, ""); $0 = pend[pid] $0; delete pend[pid] }
                ret = $0; sub(/.* = /, "", ret)
        }
        /^finit_module\(/ {
                finit++
                f = fdname($0)
                if (f ~ /memfd:/) { memfd++; m = modname(f); used[m] = 1 } else file++
                if ($0 ~ /MODULE_INIT_COMPRESSED_FILE/) compressed++
                order = order (order == "" ? "" : " ") modname(f)
                if (ret ~ /^0/) finit_ok++
                else { e = ret; sub(/^-1 /, "", e); sub(/ .*/, "", e); errs = errs (errs == "" ? "" : " ") modname(f) ":" e }
        }
        /^init_module\(/ { init++ }
        /^delete_module\(/ { del++ }
        /^(init_module|finit_module)\(/ && ret ~ /^-1 EEXIST/ { eexist++ }
        /^write\(/ && ret ~ /^[0-9]+/ {
                f = fdname($0)
                if (f ~ /memfd:/) { m = modname(f); bytes[m] += ret + 0 }
        }
        /^fcntl\(.*F_ADD_SEALS/ && ret ~ /^0/ {
                if ($0 ~ /F_SEAL_WRITE/ && $0 ~ /F_SEAL_SHRINK/ && $0 ~ /F_SEAL_GROW/) sealed++
        }
        END {
                b = ""
                for (m in used) b = b (b == "" ? "" : " ") m ":" (bytes[m] + 0)
                printf "T_CALLS=%d T_FINIT=%d T_FINIT_OK=%d T_INIT=%d T_DELETE=%d T_COMPRESSED=%d T_EEXIST=%d T_ERRORS=\"%s\" ", \
                        finit + init, finit, finit_ok, init, del, compressed, eexist, errs
                printf "T_MEMFD=%d T_FILE=%d T_SEALED=%d T_ORDER=\"%s\" T_BYTES=\"%s\"\n", \
                        memfd, file, sealed, order, b
        }' "$1"
}

# --- checks (each adds to ERRS) -----------------------------------------------
want_rc() { [ "$RC" = "$1" ] || err "exit status $RC, want $1"; }
want_result() { [ "$RESULT" = "$1" ] || err "result '$RESULT', want $1"; }
want_calls() { [ "$T_CALLS" = "$1" ] || err "$T_CALLS kernel calls, want $1"; }
want_no_eexist() {
        [ "$T_EEXIST" = 0 ] || err "$T_EEXIST EEXIST"
        [ "$T_INIT" = 0 ] || err "$T_INIT init_module calls"
}
want_stderr() { grep -qF -- "$1" /tmp/err || err "stderr lacks '$1'"; }
want_stdout() { grep -qF -- "$1" /tmp/out || err "stdout lacks '$1'"; }
want_unchanged() { [ "$(snap)" = "$BEFORE" ] || err "/proc/modules changed: '$BEFORE' -> '$(snap)'"; }
want_loaded() {
        for m in "$@"; do
                grep -q "^$m " /proc/modules || { err "$m not in /proc/modules"; continue; }
                [ "$(cat "/sys/module/$m/initstate" 2>/dev/null)" = live ] ||
                        err "/sys/module/$m/initstate is not live"
        done
}
want_absent() {
        for m in "$@"; do
                ! grep -q "^$m " /proc/modules || err "$m in /proc/modules"
                [ ! -e "/sys/module/$m" ] || err "/sys/module/$m exists"
        done
}
want_param() { # MODULE PARAM VALUE
        v=$(cat "/sys/module/$1/parameters/$2" 2>/dev/null)
        [ "$v" = "$3" ] || err "/sys/module/$1/parameters/$2 is '$v', want $3"
}
# modules that appeared since begin() (or since the snapshot $1)
new_modules_since() {
        for m in $(snap); do
                case " $1 " in *" $m "*) ;; *) printf '%s ' "$m" ;; esac
        done
}
new_modules() { new_modules_since "$BEFORE"; }
count_words() { set -- $1; echo $#; }

# A fresh load of btrfs and its modules.dep chain under strace: exactly one
# finit_module per module inserted, none EEXIST, no init_module.
# btrfs_load CASE MODE [modloadctl options]; MODE: memfd (userspace
# decompression) or file (the kernel decompresses the .ko.xz itself)
btrfs_load() {
        case_name=$1 mode=$2
        shift 2
        begin "$case_name"
        chain="btrfs $(deps_of btrfs)"
        mc load --local "$@" btrfs
        want_rc 0
        want_result inserted
        want_loaded $chain
        new=$(new_modules)
        n=$(count_words "$new")
        [ "$n" -ge "$(count_words "$chain")" ] || err "only $n modules inserted"
        # one successful finit_module per module inserted; a soft dependency
        # may be tried and refused by the kernel (crc32c_intel without
        # SSE4.2 under TCG: ENODEV), as with kmod's modprobe, but nothing
        # may be loaded twice and no hard dependency may fail
        [ "$T_FINIT_OK" = "$n" ] || err "$T_FINIT_OK successful finit_module calls for $n modules inserted"
        want_no_eexist
        # what the load brought in besides modules.dep's chain: soft dependencies
        BTRFS_SOFTDEPS=""
        for m in $new; do
                case " $chain " in *" $m "*) ;; *) BTRFS_SOFTDEPS="$BTRFS_SOFTDEPS $m" ;; esac
        done
        for me in $T_ERRORS; do
                case " $chain $new " in
                *" ${me%%:*} "*) err "finit_module of ${me%%:*} failed with ${me#*:}" ;;
                esac
        done
        [ "$(echo "$T_ORDER" | tr ' ' '\n' | sort | uniq -d)" = "" ] || err "a module was handed over twice: $T_ORDER"
        if [ "$mode" = memfd ]; then
                [ "$T_MEMFD" = "$T_FINIT" ] || err "$T_MEMFD of $T_FINIT loads from a memfd"
                [ "$T_SEALED" = "$T_FINIT" ] || err "$T_SEALED of $T_FINIT memfds sealed"
                [ "$T_COMPRESSED" = 0 ] || err "$T_COMPRESSED loads with MODULE_INIT_COMPRESSED_FILE"
        else
                [ "$T_FILE" = "$T_FINIT" ] || err "$T_FILE of $T_FINIT loads from the module file"
                [ "$T_COMPRESSED" = "$T_FINIT" ] || err "$T_COMPRESSED of $T_FINIT loads with MODULE_INIT_COMPRESSED_FILE"
                [ "$T_MEMFD" = 0 ] || err "$T_MEMFD loads from a memfd"
        fi
        total=0
        for mb in $T_BYTES; do
                echo "@@BYTES $case_name ${mb%%:*} ${mb#*:}"
                total=$((total + ${mb#*:}))
        done
        echo "@@FIG $case_name inserted=$n finit_module=$T_FINIT finit_ok=$T_FINIT_OK refused=\"$T_ERRORS\" init_module=$T_INIT eexist=$T_EEXIST memfd=$T_MEMFD sealed=$T_SEALED file=$T_FILE compressed_flag=$T_COMPRESSED memfd_bytes=$total order=\"$T_ORDER\""
        end "$n modules, $T_FINIT finit_module"
}

# unload --local btrfs: btrfs and its dependencies go. A soft dependency that
# was still in use when its turn came stays, as with kmod's modprobe -r
# (crc32c_intel, used by libcrc32c until libcrc32c goes, is left by both);
# nothing else may stay.
btrfs_unload() {
        begin "$1"
        base=$2
        mc unload --local btrfs
        want_rc 0
        want_result removed
        want_absent btrfs $(deps_of btrfs)
        [ "$T_CALLS" = 0 ] || err "$T_CALLS load calls during unload"
        left=$(new_modules_since "$base")
        for m in $left; do
                case " $BTRFS_SOFTDEPS " in
                *" $m "*) ;;
                *) err "$m still loaded" ;;
                esac
        done
        end "$T_DELETE delete_module${left:+, soft dependencies left as kmod leaves them: $left}"
        reset_to "$base"
}
