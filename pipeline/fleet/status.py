"""make fleet-status: one table for the fleet, from the boards' retained status messages (MQTT), what each board's
status file says (read over Ansible, which also tells who is reachable) and what the last rollout proved on each.

A board is flagged when it is stale (no status lately), unverified (its release was not proven on it), drifting (its
shadow check alerted) or on a release other than the fleet's (the last rollout's).
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from edge.files import write_atomic
from pipeline import PipelineError
from pipeline.fleet.ansible import ad_hoc, inventory_hosts
from pipeline.fleet.config import FleetConfig

STALE_S = 60.0  # a running camera program reports every few seconds: a minute without a word is a board in trouble


def retained_statuses(broker: str, topic: str, wait: float) -> dict[str, dict]:
    """Every board's last retained status on `topic/+`, collected for `wait` seconds."""
    from edge.runners import require

    mqtt = require("paho.mqtt.client", "paho-mqtt", "fleet-status --mqtt")
    host, _, port = broker.partition(":")
    host, port = host or "localhost", int(port or 1883)
    found: dict[str, dict] = {}
    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_connect = lambda c, u, flags, rc, props: (c.subscribe(f"{topic}/+", qos=1), connected.set())
    client.on_message = lambda c, u, msg: found.__setitem__(msg.topic.rsplit("/", 1)[-1], json.loads(msg.payload))
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise PipelineError(f"cannot reach the MQTT broker at {host}:{port} ({e}); is it running (mosquitto)?") from None
    client.loop_start()
    connected.wait(5)
    time.sleep(wait)
    client.loop_stop()
    client.disconnect()
    return found


def board_files(fc: FleetConfig) -> dict[str, dict]:
    """Each board's reachability and status file, over Ansible (one ad-hoc command for the fleet)."""
    raw = ad_hoc(fc.fleet, "ansible.builtin.shell",
                 f"cd && cd {{{{ effnet_dir | default('{fc.board_dir}') }}}} 2>/dev/null && cat status.json 2>/dev/null; true",
                 fc.forks, fc.limit)
    out = {}
    for board, r in raw.items():
        status = None
        if r["ok"]:
            try:
                status = json.loads(r["out"].replace("\\n", "\n")) if r["out"].strip() else None
            except ValueError:
                status = None
        out[board] = {"reachable": r["ok"], "status": status, "why": None if r["ok"] else r["out"][:200]}
    return out


def fleet_status(fc: FleetConfig, broker: str | None, topic: str = "effnet-edge/status", wait: float = 3.0, log=print) -> dict:
    boards = inventory_hosts(fc.fleet, fc.limit)
    files = board_files(fc)
    retained = retained_statuses(broker, topic, wait) if broker else {}
    proven, fleet_release = history(fc.state_dir)
    now = time.time()
    rows = {b: _row(b, files.get(b, {"reachable": False, "status": None}), retained.get(b), proven, fleet_release, now)
            for b in boards}
    flagged = {b: r["flags"] for b, r in rows.items() if r["flags"]}
    line = ("every board is reachable, verified, current and on release " + str(fleet_release) if not flagged else
            "; ".join(f"{b}: {', '.join(f)}" for b, f in flagged.items()))
    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "fleet": str(fc.fleet), "release": fleet_release,
              "mqtt": broker, "boards": rows, "flagged": flagged, "line": line}
    out = fc.state_dir
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "fleet-status.json", json.dumps(result, indent=2))
    write_atomic(out / "fleet-status.md", markdown(result))
    _plot(result, out / "fleet-status.png")
    log(markdown(result))
    return result


def history(state_dir: Path) -> tuple[dict, str | None]:
    """What the fleet's records say: {(board, release): that board's proof of it} from every rollout, and the release
    the fleet should run: the last rollout's, or after a rollback the one its boards went back to."""
    proven = {}
    for path in sorted(state_dir.glob("rollout-*/rollout.json")):
        record = json.loads(path.read_text())
        for board, row in record["boards"].items():
            if row["result"] == "switched":
                proven[(board, record["release"])] = row
    last = [json.loads(p.read_text()) for p in (state_dir / "last-rollout.json", state_dir / "last-rollback.json") if p.exists()]
    if not last:
        return proven, None
    newest = max(last, key=lambda r: r["date"])
    if newest["command"] == "rollout":
        return proven, newest["release"]
    back = [r.get("release") for r in newest["boards"].values() if r.get("result") == "rolled back"]
    return proven, max(set(back), key=back.count) if back else None


def _row(board: str, file: dict, retained: dict | None, proven: dict, fleet_release: str | None, now: float) -> dict:
    """One board's line: the newest of its two status copies, and what the rollouts proved of its release there."""
    statuses = [s for s in (file.get("status"), retained) if s]
    status = max(statuses, key=lambda s: s.get("t", 0)) if statuses else None
    release = status.get("release") if status else None
    record = proven.get((board, release))
    verified = record is not None
    proof = (record or {}).get("proof") or {}
    age = now - status["t"] if status else None
    flags = []
    if not file.get("reachable"):
        flags.append("unreachable")
    if status is None or age > STALE_S or status.get("state") != "running":
        flags.append("stale" if status is None or age > STALE_S else f"camera program {status.get('state')}")
    if release and not verified:
        flags.append("unverified")
    if status and status.get("alerts"):
        flags.append("drifting")
    if fleet_release and release and release != fleet_release:
        flags.append(f"on release {release}, not the fleet's {fleet_release}")
    return {"reachable": bool(file.get("reachable")), "release": release, "model": status.get("model") if status else None,
            "verified": verified, "isa": status.get("isa") if status else None,
            # the rollout's proof of this release on this board: its gate and batch-1 inference latency (./run.sh latency)
            "gate": (proof.get("gate") or {}).get("verdict"), "proof_latency_ms": proof.get("latency"),
            "fps": status.get("fps") if status else None,
            "shadow": status.get("shadow") if status else None, "last_seen_s": round(age, 1) if age is not None else None,
            "alerts": status.get("alerts", []) if status else [], "via": "mqtt" if retained is not None and status is retained else "file",
            "flags": flags}


def markdown(result: dict) -> str:
    lines = [f"# Fleet status ({result['date']})", "", result["line"], "",
             "| board | reachable | release | model | verified | ISA | gate on board | int8 p50 / p99 ms on board | camera fps "
             "| field agreement (95 %) | last seen | alerts |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for board, r in result["boards"].items():
        lat, shadow, seen = r["proof_latency_ms"], r["shadow"], r["last_seen_s"]
        latency = f"{lat['p50']:.2f} / {lat['p99']:.2f}" if lat else ""
        agreement = f"{shadow['agreement']:.2f} ({shadow['ci95'][0]:.2f}-{shadow['ci95'][1]:.2f}, {shadow['frames']} frames)" if shadow else ""
        last_seen = "" if seen is None else f"{seen:.0f} s ago"
        lines.append(f"| {board} | {'yes' if r['reachable'] else 'no'} | {r['release'] or ''} | {r['model'] or ''} "
                     f"| {'yes' if r['verified'] else 'no'} | {r['isa'] or ''} | {r['gate'] or ''} | {latency} "
                     f"| {r['fps'] or ''} | {agreement} | {last_seen} | {'; '.join(r['alerts'])} |")
    notes = ["", "Verified: this release passed make rollout's proof on this board; the gate and the p50 / p99 (int8, batch 1, "
             "./run.sh latency) are that proof's. Camera fps, field agreement (int8 against float on the frames the shadow "
             "check sampled, with its 95 % interval) and last seen come from the camera program's latest status.",
             "", "![fleet](fleet-status.png)", ""]
    return "\n".join(lines + notes)


def _plot(result: dict, path: Path) -> None:
    """Field agreement with its interval, and on-board p99, per board."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    boards = list(result["boards"])
    rows = [result["boards"][b] for b in boards]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.5 * len(boards) + 2))
    for i, r in enumerate(rows):
        if r["shadow"]:
            s = r["shadow"]
            left.errorbar(s["agreement"], i, xerr=[[s["agreement"] - s["ci95"][0]], [s["ci95"][1] - s["agreement"]]], fmt="o", color="C0")
        if r["proof_latency_ms"]:
            right.barh(i, r["proof_latency_ms"]["p99"], color="C1")
    for ax, title in ((left, "field agreement int8 vs float (95 %)"), (right, "int8 batch-1 p99 ms on the board, at rollout")):
        ax.set_yticks(range(len(boards)), boards)
        ax.set_title(title)
    left.set_xlim(0, 1.02)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
