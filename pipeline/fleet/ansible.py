"""Ansible as the fleet's engine: the inventory read and checked, a playbook or an ad-hoc module run over it, and its
faults (an unreachable board, a refused key) turned into one line each. Nothing here knows what a rollout is."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline import PipelineError

# Ansible's own settings for our runs: no colour or retry files, an inventory that does not parse is an error (not a
# warning and an empty fleet), and the board's Python is found without a warning per board (the inventory may still
# set ansible_python_interpreter).
ENV = {"ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0", "ANSIBLE_INVENTORY_UNPARSED_FAILED": "1",
       "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "1", "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
       "ANSIBLE_DEPRECATION_WARNINGS": "0", "ANSIBLE_LOCALHOST_WARNING": "0", "ANSIBLE_FORCE_COLOR": "0"}
UNREACHABLE = re.compile(r"^fatal: \[([^\]]+)\]: UNREACHABLE! => (\{.*)$")
FAILED = re.compile(r"^fatal: \[([^\]]+)\]: FAILED! => (\{.*)$")


def tool(name: str) -> str:
    """ansible-playbook, ansible-inventory or ansible: beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise PipelineError(f"the fleet commands need {name} from ansible-core: pip install -e '.[host]' (make setup installs it)")
    return found


def environment() -> dict:
    """Ansible's settings for one command. Its ssh connections are shared within the command (ControlPersist) but
    never with another one: a connection left open by an earlier command would skip this one's login, key and all."""
    return {**os.environ, **ENV, "ANSIBLE_SSH_CONTROL_PATH_DIR": tempfile.mkdtemp(prefix="effnet-ssh-")}


def inventory_hosts(fleet: str | Path, limit: str = "all") -> list[str]:
    """The boards of an inventory (after --limit), checked before anything runs: a missing file, one that does not
    parse and one without hosts are one line each."""
    if not str(fleet):
        raise PipelineError("the fleet commands need FLEET=inventory.ini, an Ansible inventory of the boards (README: 'A fleet of boards')")
    path = Path(fleet)
    if not path.exists():
        raise PipelineError(f"FLEET={fleet}: no such inventory; write one (README: 'A fleet of boards') and pass FLEET=path")
    r = subprocess.run([tool("ansible-inventory"), "-i", str(path), "--list", *(["--limit", limit] if limit != "all" else [])],
                       capture_output=True, text=True, env=environment())
    if r.returncode != 0:
        why = " ".join(line.strip() for line in r.stderr.splitlines() if line.strip())
        raise PipelineError(f"FLEET={fleet} does not parse as an Ansible inventory ({_short(why)}); see the README's example inventory")
    hosts = sorted(json.loads(r.stdout).get("_meta", {}).get("hostvars", {}))
    if not hosts:
        raise PipelineError(f"FLEET={fleet} lists no boards{' matching LIMIT=' + limit if limit != 'all' else ''}")
    return hosts


def _short(text: str, n: int = 300) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= n else text[: n - 3] + "..."


def run_playbook(playbook: Path, fleet: str | Path, extra_vars: Path, log_path: Path, forks: int, limit: str,
                 log=print) -> tuple[int, dict, dict]:
    """Run `playbook` over the inventory, its output to `log_path` and a line per task to `log`. Returns the exit
    status, {board: why} for each board Ansible could not reach and {board: why} of each board's first failed task."""
    cmd = [tool("ansible-playbook"), "-i", str(fleet), str(playbook), "--extra-vars", f"@{extra_vars}", "--forks", str(forks),
           *(["--limit", limit] if limit != "all" else [])]
    unreachable: dict[str, str] = {}
    failed: dict[str, str] = {}
    with open(log_path, "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment())
        for line in proc.stdout:
            out.write(line)
            if line.startswith("TASK [") or line.startswith("PLAY ["):
                log("[fleet] " + line.strip().strip("*").strip())
            elif m := UNREACHABLE.match(line.strip()):
                unreachable[m.group(1)] = _message(m.group(2))
            elif (m := FAILED.match(line.strip())) and "...ignoring" not in line:
                failed.setdefault(m.group(1), _message(m.group(2)))
            elif line.startswith("fatal: ") or line.startswith("failed: "):
                log(f"[fleet] {_short(line, 240)}")
        rc = proc.wait()
    return rc, unreachable, failed


def _message(payload: str) -> str:
    """A failed task's own words: its stderr's last line where it wrote one, else Ansible's message."""
    try:
        result = json.loads(payload)
    except ValueError:
        return payload
    stderr = [line for line in (result.get("stderr") or "").splitlines() if line.strip()]
    return stderr[-1] if stderr else result.get("msg") or payload


def reach_line(board: str, why: str, fleet: str | Path) -> str:
    """One line for a board Ansible could not log in to, naming the fix."""
    if "Permission denied" in why:
        return (f"{board} refused the ssh key ({_short(why, 120)}): add the key to the board's ~/.ssh/authorized_keys "
                f"or set ansible_ssh_private_key_file in {fleet}")
    if "Host key verification failed" in why or "REMOTE HOST IDENTIFICATION HAS CHANGED" in why:
        return f"{board}'s host key is unknown or changed ({_short(why, 120)}): check the board, then update known_hosts"
    return (f"{board} is unreachable ({_short(why, 160)}): check ansible_host and ansible_port in {fleet}, "
            "and that the board is up with sshd running")


def ad_hoc(fleet: str | Path, module: str, args: str, forks: int = 10, limit: str = "all", timeout: int = 10) -> dict[str, dict]:
    """An ad-hoc module on every board (`ansible -o`): {board: {"ok": bool, "out": stdout or the failure}}."""
    r = subprocess.run([tool("ansible"), "all", "-i", str(fleet), "-m", module, "-a", args, "-o", "--forks", str(forks),
                        "-T", str(timeout), *(["--limit", limit] if limit != "all" else [])],
                       capture_output=True, text=True, env=environment())
    results = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^(\S+) \| (\w+!?)(?: \| rc=(-?\d+))? (?:\| \(stdout\) |=> )?(.*)$", line)
        if not m:
            continue
        board, state, _rc, rest = m.groups()
        results[board] = {"ok": state in ("SUCCESS", "CHANGED"), "state": state.rstrip("!"), "out": rest}
    return results
