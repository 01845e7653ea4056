# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside the booted test system as modloadd-test.service, after
# multi-user.target (bash; the helpers kv, block, uptime_s, finish and
# $IDLE come from sysimage.py). It only collects facts, printed as
# "@@KV key=value" lines and "@@BEGIN name" ... "@@END name rc" blocks;
# test-system.py judges them.

SOCK=/run/modloadd/io.modloadd.Manager
wait_inactive() {       # $1: limit in seconds; prints the seconds it took
        local t0 t1 limit=$1
        t0=$(uptime_s)
        while systemctl is-active -q modloadd.service; do
                t1=$(uptime_s)
                if awk -v a="$t0" -v b="$t1" -v l="$limit" 'BEGIN { exit !(b - a > l) }'; then
                        break
                fi
                sleep 0.2
        done
        t1=$(uptime_s)
        awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }'
}
unit_kv() {             # $1: prefix, $2: unit, rest: properties
        local prefix=$1 unit=$2 p
        shift 2
        for p in "$@"; do
                kv "$prefix.$p" "$(systemctl show -P "$p" "$unit")"
        done
}

kv scenario_start "$(uptime_s)"
kv system_state "$(systemctl is-system-running --wait)"
udevadm settle --timeout=120
kv settled "$(uptime_s)"
block analyze systemd-analyze
block failed_units systemctl --failed --no-legend --plain

# --- 1. boot settled: the socket listens, the daemon went away when idle ----
unit_kv socket modloadd.socket ActiveState SubState
kv socket_file "$([ -S $SOCK ] && echo yes || echo no)"
kv service_at_settle "$(systemctl is-active modloadd.service)"
kv idle_wait "$(wait_inactive $((IDLE + 30)))"
unit_kv idle modloadd.service ActiveState SubState Result ExecMainStatus ExecMainCode
unit_kv idle_socket modloadd.socket ActiveState SubState NAccepted NConnections
kv idle_socket_file "$([ -S $SOCK ] && echo yes || echo no)"

# --- 2. a request starts the daemon again (socket activation) ------------
# Nothing may talk to the socket between the idle exit above and this.
kv activation_before "$(systemctl is-active modloadd.service)"
kv activation_inv_before "$(systemctl show -P InvocationID modloadd.service)"
block status_json modloadctl status --json
kv activation_after "$(systemctl is-active modloadd.service)"
kv activation_inv_after "$(systemctl show -P InvocationID modloadd.service)"
unit_kv activation_socket modloadd.socket NAccepted

# --- 3. what the boot did: modules-load.d and udev through modloadd ----------------------------
unit_kv ml modloadd-modules-load.service ActiveState SubState Result ExecMainStatus ExecMainPID \
        ExecMainStartTimestampMonotonic ExecMainExitTimestampMonotonic
unit_kv sml systemd-modules-load.service LoadState ActiveState ExecMainStartTimestampMonotonic \
        UnitFileState
block modules_load_conf cat /etc/modules-load.d/test.conf
block proc_modules cat /proc/modules
block journal_daemon journalctl -b -u modloadd.service -o short-monotonic --no-pager --no-hostname
block journal_modules_load journalctl -b -u modloadd-modules-load.service -u systemd-modules-load.service \
        -o short-monotonic --no-pager --no-hostname
block journal_udevd journalctl -b -u systemd-udevd.service -o short-monotonic --no-pager --no-hostname
block udev_rules ls -l /etc/udev/rules.d/
block journal_modules journalctl -b -o short-monotonic --no-pager --no-hostname \
        --grep='modprobe|kmod|module|modloadctl'

# --- 4. udev asks the daemon: replay the coldplug ------------------------
# Every device again, as at boot: udev runs modloadctl for each MODALIAS.
# The modules are in the kernel by now, so the daemon answers from its
# cache and counts the answers as shared. A monitor, connected meanwhile,
# records every request with the caller's pid (and keeps one daemon
# instance alive across the replay, so its statistics cover all of it).
modloadctl monitor --json >/run/monitor.json 2>/run/monitor.err &
mon=$!
sleep 1
kv trigger_inv_before "$(systemctl show -P InvocationID modloadd.service)"
kv trigger_start "$(uptime_s)"
udevadm trigger --action=add --type=devices
udevadm settle --timeout=120
kv trigger_end "$(uptime_s)"
block status_json_trigger modloadctl status --json
kv trigger_inv_after "$(systemctl show -P InvocationID modloadd.service)"
kill $mon
wait $mon
kv monitor_lines "$(wc -l </run/monitor.json)"
block monitor_requests grep '"kind":"request"' /run/monitor.json
block monitor_answered grep '"kind":"answered"' /run/monitor.json
block monitor_err cat /run/monitor.err

# --- 5. idle exit again ---------------------------------------------------
kv idle2_wait "$(wait_inactive $((IDLE + 30)))"
unit_kv idle2 modloadd.service ActiveState Result ExecMainStatus
unit_kv idle2_socket modloadd.socket ActiveState SubState

# --- 6. systemd 257's varlinkctl against the socket ----------------------
block varlinkctl_info varlinkctl info $SOCK
block varlinkctl_introspect varlinkctl introspect $SOCK io.modloadd.Manager
block varlinkctl_stats varlinkctl call $SOCK io.modloadd.Manager.GetStatistics '{}'
kv varlinkctl_service "$(systemctl is-active modloadd.service)"
block journal_tail journalctl -b -u modloadd.service -o short-monotonic --no-pager --no-hostname \
        --since=-60s
finish 0
