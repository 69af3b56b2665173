"""``make run``: the whole system on this machine with demo data.

Checks that its ports are free, starts an embedded redis-server (when REDIS_URL is unset)
that keeps its data under .run/redis with an append-only file, loads a demo catalogue when
the store has no ads, writes its URLs, admin token and Flower password to .run/demo.json,
prints them, then runs every Procfile process under honcho until Ctrl-C. A restart keeps the
ads, what was learnt and the credentials; ``make run FRESH=1`` (``--fresh``) or ``make
clean`` starts afresh. Everything listens on 127.0.0.1 unless HOST is set. (A launcher, not
the service: it reads the environment only to hand it on to the processes it starts.)
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from config.local import RUN_DIR, read_state, write_state
from devtools.redis_server import RedisServer

ROOT = Path(__file__).resolve().parent.parent
DEMO_ADS = 3000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--fresh", action="store_true",
                        help="forget the previous run's data and credentials")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR,
                        help="where the demo keeps its data and state (default: .run/)")
    parser.add_argument("--demo-ads", type=int, default=DEMO_ADS,
                        help="ads in the demo catalogue loaded into an empty store")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    run_dir: Path = args.run_dir.resolve()
    state_path = run_dir / "demo.json"

    env = os.environ.copy()
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HOST", "127.0.0.1")
    env.setdefault("PORT", "8000")
    env.setdefault("FLOWER_PORT", "5555")
    env.setdefault("LOCAL_DEMO", "true")
    env.setdefault("LOG_FORMAT", "text")
    env.setdefault("REGEN_INTERVAL_S", "15")
    taken = busy_port(env)
    if taken:
        print(taken, file=sys.stderr)
        return 1
    state = {} if args.fresh else read_state(state_path)
    if state.get("pid") and alive(state["pid"]) and state["pid"] != os.getpid():
        print(f"make run is already running (pid {state['pid']}, its URLs in {state_path}); "
              f"stop it with Ctrl-C first", file=sys.stderr)
        return 1
    run_dir.mkdir(parents=True, exist_ok=True)
    if not env.get("ARCHIVE_URL"):     # the archive beside the embedded Redis's data
        if args.fresh:
            shutil.rmtree(run_dir / "archive", ignore_errors=True)
        env["ARCHIVE_URL"] = str(run_dir / "archive")
    server = None
    try:
        if not env.get("REDIS_URL"):
            data = run_dir / "redis"
            if args.fresh:
                shutil.rmtree(data, ignore_errors=True)
            server = RedisServer(data, prefer_embedded=True, appendonly=True,
                                 own_session=True).start()
            env["REDIS_URL"] = server.url
            print(f"embedded redis-server on 127.0.0.1:{server.port}, keeping its data in "
                  f"{data} (append-only file)", flush=True)
        env.setdefault("ADMIN_TOKEN", state.get("admin_token") or "demo-" + secrets.token_hex(12))
        env.setdefault("FLOWER_BASIC_AUTH",
                       state.get("flower_basic_auth") or "demo:" + secrets.token_hex(6))
        ad_id = load_demo_ads(env, run_dir, args.demo_ads)
        urls = demo_urls(env, ad_id)
        write_state({"pid": os.getpid(), "redis_url": env["REDIS_URL"],
                     "settings": demo_settings(env),
                     "admin_token": env["ADMIN_TOKEN"],
                     "flower_basic_auth": env["FLOWER_BASIC_AUTH"], "urls": urls,
                     "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                    state_path)
        print(banner(env, ad_id, state_path), flush=True)
        honcho = subprocess.Popen([sys.executable, "-m", "honcho", "start", "-f", "Procfile",
                                   "--port", env["PORT"]], env=env, cwd=ROOT)
        try:
            code = honcho.wait()
        except KeyboardInterrupt:
            honcho.send_signal(signal.SIGINT)  # honcho stops every process it started
            honcho.wait(30)
            code = 0
        return code
    except KeyboardInterrupt:
        return 0
    finally:
        if server is not None:
            server.stop()
        saved = read_state(state_path)
        if saved.get("pid") == os.getpid():   # keep the credentials, drop what has stopped
            write_state({k: v for k, v in saved.items() if k not in ("pid", "redis_url")},
                        state_path)


def demo_settings(env: dict[str, str]) -> dict[str, str]:
    """The service settings this run gives its processes, but the secrets and the URL
    (kept apart in the state file), for ``flask`` commands to judge the demo by."""
    from config import Settings

    names = {name.upper() for name in Settings.model_fields}
    secret = {"REDIS_URL", "CELERY_BROKER_URL", "ADMIN_TOKEN", "FLOWER_BASIC_AUTH",
              "DASHBOARD_BASIC_AUTH"}
    return {k: v for k, v in env.items() if k in names - secret and v != ""}


def busy_port(env: dict[str, str]) -> str | None:
    """Why the demo cannot start on its ports, or None when both are free."""
    host = env["HOST"]
    for name, other in (("PORT", "8001"), ("FLOWER_PORT", "5556")):
        port = int(env[name])
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError as exc:
                why = ("is taken (another make run, or another server?)"
                       if exc.errno == errno.EADDRINUSE else f"cannot be used: {exc.strerror}")
                return (f"port {port} ({name}) on {host} {why}; choose another, for example "
                        f"{name}={other} make run")
    return None


def alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_demo_ads(env: dict[str, str], run_dir: Path, count: int) -> str:
    """Import the demo catalogue when the store has no live ads; the id of an ad to show."""
    from store import Store  # imported here: the launcher needs nothing else of the service

    demo_file = run_dir / "demo-ads.jsonl"
    store = Store.from_url(env["REDIS_URL"])
    try:
        live = store.live_ad_count(time.time())
    finally:
        store.close()
    flask = [sys.executable, "-m", "flask", "--app", "webapp"]
    if live == 0 or not demo_file.exists():
        with demo_file.open("wb") as out:
            subprocess.run([*flask, "ads", "demo", "--count", str(count)], env=env,
                           stdout=out, check=True, cwd=ROOT)
        subprocess.run([*flask, "ads", "import", str(demo_file)], env=env, check=True, cwd=ROOT)
    else:
        print(f"keeping the {live} live ads and what was learnt from the last run "
              f"(make run FRESH=1 starts afresh)", flush=True)
    with demo_file.open("rb") as lines:
        return json.loads(lines.readline())["ad_id"]


def demo_urls(env: dict[str, str], ad_id: str) -> dict[str, str]:
    host = env["HOST"] if env["HOST"] not in ("0.0.0.0", "::") else "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    base = f"http://{host}:{env['PORT']}"
    return {"api": base, "dashboard": f"{base}/dashboard", "docs": f"{base}/docs/",
            "flower": f"http://{host}:{env['FLOWER_PORT']}/", "an_ad": f"{base}/v1/ads/{ad_id}"}


def banner(env: dict[str, str], ad_id: str, state_path: Path) -> str:
    urls = demo_urls(env, ad_id)
    base = urls["api"]
    user, password = env["FLOWER_BASIC_AUTH"].split(":", 1)
    event = f'{{"events": [{{"event_id": "e1", "ad_id": "{ad_id}", "type": "apply"}}]}}'
    bearer = f"Authorization: Bearer {env['ADMIN_TOKEN']}"
    return f"""
The recommender is starting on {env['HOST']}. Try:
  a feed in Berlin      curl '{base}/v1/feed?lat=52.52&lon=13.405&limit=5'
  ads near Paris        curl '{base}/v1/ads/nearby?lat=48.8566&lon=2.3522&radius_km=1&limit=5'
  one ad                curl '{base}/v1/ads/{ad_id}'
  its stats             curl '{base}/v1/stats/ads/{ad_id}'
  a user's feed         curl '{base}/v1/recommend/u42?lat=48.8566&lon=2.3522&limit=5'
                        curl '{base}/v1/recommend/u42'   (their last known location)
  post an event         curl -X POST '{base}/v1/events' -H 'Content-Type: application/json' \\
                          -d '{event}'
  roll up now (admin)   curl -X POST '{base}/v1/admin/rollup?wait=true' -H '{bearer}'
  readiness             curl '{base}/readyz'
  daily CTR             curl '{base}/v1/stats/ctr'
  metrics               curl '{base}/metrics'
  the dashboard         {urls['dashboard']}   (open from this machine)
  the API's docs        {urls['docs']}
  health check          .venv/bin/flask --app webapp status
  Flower                {urls['flower']}   (user {user}, password {password})
The admin token, Flower's password and these URLs are kept in {state_path}.
Ctrl-C stops everything; the next make run keeps the data (make run FRESH=1: start afresh).
"""


if __name__ == "__main__":
    sys.exit(main())
