"""schemathesis against the real gunicorn, driven by the app's own /openapi.json: generated
valid and invalid requests to every operation (with the admin token, so the admin operations
are reached too) get no 5xx, no status the document leaves out, no body, header or content
type that breaks it. Every check runs but those tests/integration/schemathesis.toml turns off,
each with its reason."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from store import Keys, Store
from tests.conftest import ADMIN_TOKEN

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = os.environ.get("FUZZ_SEED", "20261124")
EXAMPLES = os.environ.get("FUZZ_EXAMPLES", "100")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
        web: str, real_store: Store, tmp_path: Path):
    document = requests.get(f"{web}/openapi.json", timeout=10).json()
    operations = sum(len(ops) for ops in document["paths"].values())
    cli = Path(sys.executable).with_name("schemathesis")
    run = subprocess.run(
        [str(cli), "--config-file", str(CONFIG), "--no-color", "run", f"{web}/openapi.json",
         "-H", f"Authorization: Bearer {ADMIN_TOKEN}", "--max-examples", EXAMPLES,
         "--seed", SEED, "--generation-database", "none", "--request-timeout", "30",
         "--workers", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=540, stdin=subprocess.DEVNULL)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    selected, total = map(int, re.search(r"(\d+) selected / (\d+) total", output).groups())
    # every operation but GET /openapi.json itself, which schemathesis leaves out
    assert selected == total == operations - 1, output[-3000:]
    assert f"Tested: {selected}" in output and "Failures:" not in output, output[-3000:]
    generated = int(re.search(r"(\d+) generated", output).group(1))
    assert generated > 20 * operations, output[-2000:]
    # the token reached the admin operations: ads were written through PUT /v1/ads/{ad_id}
    assert real_store.r.zcard(Keys.ads_geo) > 0
