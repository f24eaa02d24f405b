"""The README's quick start, followed word for word on a fresh lab.

The lab stands in for a host where the package is installed: host-supervisor.service
runs from the shipped unit with /etc/host-supervisor as its config (the shipped main
config, no policy yet), `host-supervisor` is on the PATH, and nginx.service serves on
port 80. The steps are read from the README between its quickstart markers: each yaml
block is written to the file its first line names, each line of each sh block is run as
root in the lab, in order, and a text block shows lines the last command must print.
/etc and /usr/local/sbin get a writable layer of the lab's own (an overlay and a bind
mount in its mount namespace), so nothing is written to the host's.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from supervisor.testing.lab import Lab
from tests.lab_units import DAEMON_UNIT, daemon_cli, daemon_unit, web_unit

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
START, END = "<!-- quickstart:start -->", "<!-- quickstart:end -->"
FENCE = re.compile(r"^( *)```(\w+)\n(.*?)^\1```$", re.M | re.S)
LAYER = "/run/quickstart"  # the lab's own tmpfs /run: an overlay's upper layer needs one


@dataclass(frozen=True)
class Block:
    language: str
    text: str


def quickstart_blocks(readme: str) -> list[Block]:
    """The code blocks between the quickstart markers, in order, without their indent."""
    section = readme[readme.index(START) : readme.index(END)]
    blocks = []
    for indent, language, body in FENCE.findall(section):
        lines = body.splitlines(keepends=True)
        assert all(not line.strip() or line.startswith(indent) for line in lines), body
        blocks.append(Block(language, "".join(line[len(indent) :] for line in lines)))
    return blocks


def test_the_quickstart_is_a_policy_then_commands() -> None:
    blocks = quickstart_blocks((REPO / "README.md").read_text())
    assert [b.language for b in blocks] == ["yaml", "sh", "sh", "text"]
    assert blocks[0].text.startswith("# /etc/host-supervisor/policies.d/")
    assert "host-supervisor validate\n" in blocks[1].text


@pytest.fixture(scope="module")
def host(lab: Lab) -> Iterator[Lab]:
    """The lab as a host with the package installed and nginx serving on port 80."""
    shared = Path(lab.shared_dir)
    lab.run("mkdir", "-p", f"{LAYER}/upper", f"{LAYER}/work", f"{LAYER}/sbin")
    lab.run(
        "mount", "-t", "overlay", "overlay", "-o",
        f"lowerdir=/etc,upperdir={LAYER}/upper,workdir={LAYER}/work", "/etc",
    )  # fmt: skip
    lab.run("mount", "--bind", f"{LAYER}/sbin", "/usr/local/sbin")
    command = shlex.join(daemon_cli())
    lab.run(
        "install", "-m", "0755", "/dev/stdin", "/usr/local/sbin/host-supervisor",
        input=f'#!/bin/sh\nexec {command} "$@"\n',
    )  # fmt: skip
    lab.run("install", "-d", "-m", "0755", "/etc/host-supervisor/policies.d")
    shipped = (REPO / "etc/host-supervisor/host-supervisor.yaml").read_text()
    lab.run(
        "install", "-m", "0644", "/dev/stdin", "/etc/host-supervisor/host-supervisor.yaml",
        input=shipped,
    )  # fmt: skip
    lab.install_unit("nginx.service", web_unit(80))
    lab.run("systemctl", "start", "nginx.service")
    lab.install_unit(DAEMON_UNIT, daemon_unit(Path("/etc/host-supervisor"), shared / "state"))
    lab.run("systemctl", "start", DAEMON_UNIT, timeout=60)
    yield lab


def _words(line: str) -> tuple[str, ...]:
    return tuple(line.split())


def _run(lab: Lab, line: str) -> str:
    done = lab.run("sh", "-c", f"umask 022; {line}", check=False, timeout=60)
    assert done.returncode == 0, f"{line}: exit {done.returncode}\n{done.stdout}{done.stderr}"
    return done.stdout


def _status_until_healthy(lab: Lab, line: str) -> str:
    """`status` exits 0 once the unit is judged healthy: a person would look again."""
    deadline = time.monotonic() + 30
    while True:
        done = lab.run("sh", "-c", line, check=False)
        if done.returncode == 0 and "healthy" in done.stdout:
            return done.stdout
        assert time.monotonic() < deadline, f"{line}: exit {done.returncode}\n{done.stdout}"
        time.sleep(1)


def test_the_readme_quickstart_works_word_for_word(host: Lab) -> None:
    lab = host
    blocks = quickstart_blocks((REPO / "README.md").read_text())
    outputs: dict[str, str] = {}
    last = ""
    for block in blocks:
        if block.language == "text":  # lines the last command printed, dates aside
            printed = {_words(line)[2:] for line in outputs[last].splitlines()}
            for line in block.text.splitlines():
                assert _words(line)[2:] in printed, f"{last}: no {line!r} in\n{outputs[last]}"
            continue
        if block.language == "yaml":
            path = block.text.splitlines()[0].removeprefix("# ").strip()
            lab.run("install", "-m", "0644", "/dev/stdin", path, input=block.text)
            continue
        for line in block.text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            command = line.split("#")[0].strip()
            if command.startswith("host-supervisor status"):
                outputs[command] = _status_until_healthy(lab, command)
            else:
                outputs[command] = _run(lab, command)
            last = command

    assert outputs["host-supervisor validate"].strip() == "OK: 1 policy for 1 unit"
    status = outputs["host-supervisor status nginx.service"]
    assert "nginx.service" in status, status
    history = lab.run(*daemon_cli(), "history", "nginx.service", "--json").stdout
    kinds = [entry["kind"] for entry in json.loads(history)["entries"]]
    assert kinds.index("health") < kinds.index("action") < kinds.index("recovery"), kinds
    assert lab.show("nginx.service", "ActiveState")["ActiveState"] == "active"
