#!/bin/sh
# The board's side of make rollout / make rollback (pipeline/fleet/playbooks). POSIX sh and python3 only.
# ./board.sh COMMAND DIR ARGS...; every user value arrives as an argument, never spliced into a script.
# DIR holds releases/<id>/ (one bundle each), venvs/<requirements hash>/, the links current and previous,
# status.json (the camera program's status) and, without systemd, camera.pid and camera.log.
set -u
cmd=$1; dir=$2; shift 2
fail() { echo "$*" >&2; exit 1; }

link() {  # link NAME TARGET: replace the link DIR/NAME atomically (a rename), so it is never absent or half-made
    ln -sfn "$2" "$dir/.$1.new" && mv -T "$dir/.$1.new" "$dir/$1" || fail "cannot switch $dir/$1 to $2"
}

release_of() { [ -L "$dir/$1" ] && basename "$(readlink "$dir/$1")"; }

stop_process() {  # the camera program started without systemd, if it runs
    if [ -f "$dir/camera.pid" ] && kill -0 "$(cat "$dir/camera.pid")" 2>/dev/null; then
        pid=$(cat "$dir/camera.pid"); kill "$pid"
        i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$pid" 2>/dev/null
    fi
    rm -f "$dir/camera.pid"
}

case "$cmd" in
preflight)  # NEED_KB: the board can make a venv and has the room a release needs
    mkdir -p "$dir/releases" "$dir/venvs" 2>/dev/null || fail "cannot make $dir on the board: check effnet_dir and its permissions"
    python3 -c 'import sys, venv, ensurepip; assert sys.version_info >= (3, 9)' 2>/dev/null \
        || fail "the board has no python3 >= 3.9 with venv and ensurepip: sudo apt install python3-venv"
    free_kb=$(df -Pk "$dir" | awk 'NR==2 {print $4}')
    [ "$free_kb" -ge "$1" ] || fail "the board's disk is full: $dir has $((free_kb / 1024)) MB free, a release needs $(($1 / 1024 + 1)) MB; free some space or keep fewer releases (KEEP=)"
    echo "current=$(release_of current) previous=$(release_of previous) free_mb=$((free_kb / 1024))"
    ;;
install)  # RELEASE [PIP ARGS...]: the release's venv, shared by releases whose requirements are the same
    rel="$dir/releases/$1"; shift
    [ -f "$rel/requirements.txt" ] || fail "$rel is not an unpacked bundle"
    # paho-mqtt beside the bundle's own requirements: a fleet's boards publish their status (--mqtt)
    hash=$( (cat "$rel/requirements.txt"; echo "paho-mqtt>=2.0") | sha256sum | cut -c1-16)
    venv="$dir/venvs/$hash"
    if [ ! -f "$venv/.complete" ]; then
        rm -rf "$venv"
        python3 -m venv --system-site-packages "$venv" || fail "cannot make a virtual environment on the board: sudo apt install python3-venv"
        if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" -r "$rel/requirements.txt" "paho-mqtt>=2.0" > "$venv.log" 2>&1; then
            why=$(grep -E 'ERROR|error:' "$venv.log" | tail -n 1)
            built=$(grep -E "command '[^']*' failed|gcc|cc1|Python\.h|compiler" "$venv.log" | tail -n 1)
            rm -rf "$venv"
            if [ -n "$built" ] || grep -qE 'Failed building wheel|Could not build wheels|legacy-install-failure|Failed to build' "$venv.log"; then
                fail "pip needs a C compiler on the board to build a wheel (${built:-$why}): sudo apt install build-essential python3-dev"
            fi
            fail "pip could not install the release's requirements on the board ($why); check the board's network or effnet_pip_args"
        fi
        touch "$venv/.complete"
    fi
    ln -sfn "../../venvs/$hash" "$rel/.venv"
    ;;
switch)  # RELEASE: previous <- current, current <- releases/RELEASE
    [ -d "$dir/releases/$1" ] || fail "no release $1 on the board"
    old=$(release_of current)
    if [ -n "$old" ] && [ "$old" != "$1" ]; then link previous "releases/$old"; fi
    link current "releases/$1"
    echo "switched ${old:-nothing} -> $1"
    ;;
revert)  # [RELEASE [PREVIOUS]]: current <- RELEASE (default: the previous link), previous <- PREVIOUS (default: what
         # current was); RELEASE "" undoes a board's first release: no current, no camera program
    if [ $# -ge 1 ]; then back=$1; else back=$(release_of previous) || fail "no previous release on the board to go back to"; fi
    now=$(release_of current)
    if [ -z "$back" ]; then
        stop_process
        command -v systemctl >/dev/null && [ -d /run/systemd/system ] && sudo -n systemctl stop effnet-edge.service 2>/dev/null
        rm -f "$dir/current" "$dir/status.json"
        echo "reverted ${now:-nothing} -> nothing"
        exit 0
    fi
    [ -d "$dir/releases/$back" ] || fail "release $back is no longer on the board"
    link current "releases/$back"
    if [ $# -ge 2 ]; then
        if [ -n "$2" ]; then link previous "releases/$2"; else rm -f "$dir/previous"; fi
    elif [ -n "$now" ] && [ "$now" != "$back" ]; then
        link previous "releases/$now"
    fi
    echo "reverted ${now:-nothing} -> $back"
    ;;
restart)  # MANAGER BOARD [CAMERA ARGS...]: (re)start the camera program on current, under systemd or as a process
    manager=$1; board=$2; shift 2
    set -- --board "$board" "$@"
    if [ "$manager" = auto ]; then
        if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then manager=systemd; else manager=process; fi
    fi
    if [ "$manager" = systemd ]; then
        unit=/etc/systemd/system/effnet-edge.service
        args=""; for a in "$@"; do args="$args \"$(printf '%s' "$a" | sed 's/["\\]/\\&/g')\""; done
        printf '[Unit]\nDescription=effnet-edge camera classifier (make rollout)\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=simple\nUser=%s\nWorkingDirectory=%s/current\nExecStart=%s/current/run.sh run --headless --json %s/classifications.jsonl --status %s/status.json%s\nRestart=on-failure\nRestartSec=3\n\n[Install]\nWantedBy=multi-user.target\n' \
            "$(id -un)" "$dir" "$dir" "$dir" "$dir" "$args" | sudo -n tee "$unit" >/dev/null || fail "cannot write $unit: the login needs passwordless sudo for systemd (or set effnet_service_manager=process)"
        sudo -n systemctl daemon-reload && sudo -n systemctl enable effnet-edge.service >/dev/null 2>&1 \
            && sudo -n systemctl restart effnet-edge.service || fail "systemctl restart effnet-edge failed: journalctl -u effnet-edge"
        echo "systemd"
    else
        stop_process
        rm -f "$dir/status.json"
        cd "$dir/current" || fail "no current release on the board"
        nohup setsid ./run.sh run --headless --json "$dir/classifications.jsonl" --status "$dir/status.json" "$@" \
            > "$dir/camera.log" 2>&1 < /dev/null &
        echo $! > "$dir/camera.pid"
        echo "process $!"
    fi
    ;;
health)  # RELEASE TIMEOUT_S: the camera program runs RELEASE and is classifying frames and publishing its status
    python3 - "$dir" "$1" "$2" <<'PY' || { tail -n 3 "$dir/camera.log" 2>/dev/null >&2; exit 1; }
import json, sys, time
from pathlib import Path
folder, release, timeout = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
deadline, last = time.time() + timeout, None
while time.time() < deadline:
    try:
        s = json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        s = None
    if s and s.get("release") == release and s.get("state") == "running" and s.get("frames", 0) > 0:
        if last is not None and s["frames"] > last["frames"]:
            print(json.dumps(s)); sys.exit(0)
        last = s
    time.sleep(0.5)
what = "no status at all" if last is None else f"status {last.get('state')} with {last.get('frames')} frames"
print(f"the camera program on release {release} did not come back classifying frames within {timeout:.0f} s ({what}); its log follows", file=sys.stderr)
sys.exit(1)
PY
    ;;
prune)  # KEEP: keep the newest KEEP releases (current and previous always), and the venvs they use
    keep=$1; cur=$(release_of current); prev=$(release_of previous); n=0
    ls -1t "$dir/releases" | while read -r r; do
        [ -d "$dir/releases/$r" ] || continue
        n=$((n + 1))
        if [ $n -le "$keep" ] || [ "$r" = "$cur" ] || [ "$r" = "$prev" ]; then continue; fi
        rm -rf "$dir/releases/$r" && echo "pruned $r"
    done
    for v in "$dir"/venvs/*/; do
        [ -d "$v" ] || continue
        used=no; for l in "$dir"/releases/*/.venv; do [ "$(readlink -f "$l")" = "$(readlink -f "$v")" ] && used=yes; done
        [ $used = no ] && rm -rf "$v" && echo "pruned venv $(basename "$v")"
    done
    true
    ;;
*) fail "unknown command $cmd" ;;
esac
