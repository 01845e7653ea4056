# Shell functions every guest scenario library uses; sourced by them from /vm-lib.sh.

# The modules in the kernel, sorted, on one line.
snap() { awk '{print $1}' /proc/modules | sort | tr '\n' ' '; }

# Back to a set of modules with rmmod (not with the code under test: cleanup
# must not depend on it), so that one failure does not spoil the next cases.
reset_to() {
        for _ in 1 2 3 4 5 6 7 8; do
                extra=""
                for m in $(snap); do
                        case " $1 " in *" $m "*) ;; *) extra="$extra $m" ;; esac
                done
                [ -n "$extra" ] || return 0
                for m in $extra; do /sbin/rmmod "$m" 2>/dev/null; done
        done
        echo "  | could not get back to '$1': $(snap)"
}
