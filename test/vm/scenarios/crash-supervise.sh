# What systemd does for modloadd.service (Restart=on-failure, RestartSec=100ms),
# for crash-all.sh: start the daemon, and start it again whenever it died of a
# failure (a signal, a non-zero exit status), until it exits with status 0 or
# /tmp/sup.stop exists. Each instance logs to /tmp/daemon.N.log; /tmp/sup.log
# gets "start N PID" and "exit N PID STATUS" lines.
#
#   crash-supervise.sh activated   run by systemd-socket-activate, which holds
#                                  the listening socket, as modloadd.socket
#                                  does, and passed it as fd 3: every instance
#                                  gets the same socket ($LISTEN_FDS=1, with
#                                  $LISTEN_PID its own pid, as systemd sets it)
#   crash-supervise.sh path        each instance listens on the default path
#                                  itself (and replaces the socket file a
#                                  killed one left behind)
mode=$1
n=0
while :; do
        n=$((n + 1))
        if [ "$mode" = activated ]; then
                # shellcheck disable=SC2016 # $$: the pid of that shell, which exec keeps
                sh -c 'export LISTEN_PID=$$; exec "$@"' sh /usr/sbin/modloadd --log-level=debug \
                        >>/tmp/daemon.$n.log 2>&1 &
        else
                /usr/sbin/modloadd --log-level=debug >>/tmp/daemon.$n.log 2>&1 &
        fi
        pid=$!
        echo "start $n $pid" >>/tmp/sup.log
        wait $pid
        rc=$?
        echo "exit $n $pid $rc" >>/tmp/sup.log
        [ "$rc" = 0 ] && break
        [ -e /tmp/sup.stop ] && break
        sleep 0.1
done
