# tools/ports.sh - sourced by tools/demo.sh and tests/lib.sh. A build/node told to listen on port 0, or a build/server
# told --port 0, takes a free port and names it in its log; these print it:
#   port_of_node PID LOG SECONDS     ("listening on HOST:PORT (port PORT)")
#   port_of_server PID LOG SECONDS   ("server: listening on http://HOST:PORT ...")
# once LOG names it, or fail when PID has exited first or SECONDS have passed.
port_in_log() {  # PID LOG SECONDS SED-EXPRESSION
    local p i
    for ((i = 0; i < $3 * 20; i++)); do
        p="$(sed -n "$4" "$2" 2>/dev/null | head -n 1)"
        [ -n "$p" ] && { echo "$p"; return 0; }
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}
port_of_node() { port_in_log "$1" "$2" "$3" 's/.*listening on .*(port \([0-9]*\)).*/\1/p'; }
port_of_server() { port_in_log "$1" "$2" "$3" 's|^server: listening on http://[^ ]*:\([0-9]*\) .*|\1|p'; }
