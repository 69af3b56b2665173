"""Every ``curl`` and ``flask`` example of the README and docs/, run as a user would paste it,
against a real web, worker, beat and Redis: each must answer 2xx (a ``flask`` command: exit 0)
with something in the answer, on whatever day the test runs."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.procs import ROOT, Proc, start_beat
from tests.conftest import ADMIN_TOKEN

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))


def documentation() -> str:
    """The README and every page under docs/, as one text."""
    return "\n".join(p.read_text() for p in [README, *DOCS])
# every answer checked: a 2xx (204 may be empty) with a body; a command: exit 0 and output
CHECKS = r'''
set -euo pipefail
curl() {
  local out code body
  out=$(command curl -sS --max-time 60 -w '\n%{http_code}' "$@") ||
    { echo "curl failed: curl $*" >&2; exit 1; }
  code=${out##*$'\n'}
  body=${out%$'\n'*}
  printf '%s\n' "$body"
  if [[ $code != 2?? ]]; then echo "HTTP $code from: curl $*" >&2; exit 1; fi
  if [[ -z $body && $code != 204 ]]; then echo "empty answer from: curl $*" >&2; exit 1; fi
}
function .venv/bin/flask {
  local out
  out=$(command .venv/bin/flask "$@") || { echo "exit $? from: flask $*" >&2; exit 1; }
  printf '%s\n' "$out"
  if [[ -z $out ]]; then echo "no output from: flask $*" >&2; exit 1; fi
}
'''


def examples(text: str) -> list[str]:
    """The README's shell blocks that run the service's API or commands: the API's first
    (they serve the feeds the commands then read), in the README's order otherwise."""
    blocks = re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M)
    runnable = [b for b in blocks if ("curl " in b or ".venv/bin/flask" in b)
                and not b.startswith("make ") and "docker" not in b]
    return sorted(runnable, key=lambda b: "curl " not in b)


def test_the_readme_has_examples_to_run():
    found = examples(documentation())
    assert len(found) >= 3
    assert sum(b.count("curl ") for b in found) >= 15
    assert any("evaluate" in b for b in found) and any("ads import" in b for b in found)


@pytest.fixture
def beat(env: dict[str, str], tmp_path: Path) -> Iterator[Proc]:
    proc = start_beat(env, tmp_path)
    yield proc
    proc.stop()


def test_every_example_answers(web: str, worker: Proc, beat: Proc, env: dict[str, str],
                               tmp_path: Path):
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")   # the examples run from a checkout
    script = CHECKS + "\n".join(examples(documentation()))
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                         env={**env, "B": web, "T": ADMIN_TOKEN}, timeout=600)
    assert run.returncode == 0, f"{run.stderr[-3000:]}\n--- stdout ---\n{run.stdout[-3000:]}"
    assert '"accepted":3' in run.stdout            # the events example, all three counted
    assert "Traceback" not in run.stderr
