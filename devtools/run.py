"""``make run``: the whole system on this machine with demo data.

Starts an embedded redis-server on a free port when REDIS_URL is unset, loads a demo
catalogue through the import command, prints URLs to try, then runs every Procfile process
under honcho until Ctrl-C. (A launcher, not the service: it reads the environment only to
hand it on to the processes it starts.)
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

from devtools.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
DEMO_ADS = 3000


def main() -> int:
    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    RUN_DIR.mkdir(exist_ok=True)
    server = None
    if not env.get("REDIS_URL"):
        server = RedisServer(RUN_DIR / "redis", prefer_embedded=True).start()
        env["REDIS_URL"] = server.url
        print(f"embedded redis-server {server.binary} on 127.0.0.1:{server.port}", flush=True)
    env.setdefault("ADMIN_TOKEN", "demo-" + secrets.token_hex(12))
    env.setdefault("LOCAL_DEMO", "true")
    env.setdefault("PORT", "8000")
    env.setdefault("REGEN_INTERVAL_S", "15")
    env.setdefault("FLOWER_BASIC_AUTH", "demo:" + secrets.token_hex(6))
    flask = [sys.executable, "-m", "flask", "--app", "webapp"]
    try:
        demo_file = RUN_DIR / "demo-ads.jsonl"
        with demo_file.open("wb") as out:
            subprocess.run([*flask, "ads", "demo", "--count", str(DEMO_ADS)], env=env,
                           stdout=out, check=True, cwd=ROOT)
        subprocess.run([*flask, "ads", "import", str(demo_file)], env=env, check=True, cwd=ROOT)
        print_urls(env, first_ad_id(demo_file))
        honcho = subprocess.Popen([sys.executable, "-m", "honcho", "start", "-f", "Procfile",
                                   "--port", env["PORT"]], env=env, cwd=ROOT)
        try:
            return honcho.wait()
        except KeyboardInterrupt:
            honcho.send_signal(signal.SIGINT)  # honcho stops every process it started
            return honcho.wait(30)
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.stop()


def first_ad_id(demo_file: Path) -> str:
    with demo_file.open("rb") as lines:
        return json.loads(lines.readline())["ad_id"]


def print_urls(env: dict[str, str], ad_id: str) -> None:
    base = f"http://127.0.0.1:{env['PORT']}"
    flower_user = env["FLOWER_BASIC_AUTH"]
    print(f"""
The recommender is starting. Try:
  a feed in Berlin      curl '{base}/v1/feed?lat=52.52&lon=13.405&limit=5'
  ads near Paris        curl '{base}/v1/ads/nearby?lat=48.8566&lon=2.3522&radius_km=1&limit=5'
  one ad                curl '{base}/v1/ads/{ad_id}'   (ids are in .run/demo-ads.jsonl)
  its stats             curl '{base}/v1/stats/ads/{ad_id}'
  a user's feed         curl '{base}/v1/recommend/u42?lat=48.8566&lon=2.3522&limit=5'
                        curl '{base}/v1/recommend/u42'   (their last known location)
  post an event         curl -X POST '{base}/v1/events' -H 'Content-Type: application/json' \\
                          -d '{{"events": [{{"event_id": "e1", "ad_id": "{ad_id}", "type": "apply"}}]}}'
  roll up now (admin)   curl -X POST '{base}/v1/admin/rollup?wait=true' -H 'Authorization: Bearer {env['ADMIN_TOKEN']}'
  readiness             curl '{base}/readyz'
  daily CTR             curl '{base}/v1/stats/ctr'
  metrics               curl '{base}/metrics'
  the dashboard         {base}/dashboard   (open in the local demo)
  the API's docs        {base}/docs/
  health check          REDIS_URL={env['REDIS_URL']} .venv/bin/flask --app webapp status
  Flower                http://{flower_user}@127.0.0.1:{env.get('FLOWER_PORT', '5555')}/
Ctrl-C stops everything.
""", flush=True)


if __name__ == "__main__":
    sys.exit(main())
