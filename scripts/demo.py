"""The main job on one machine: start a local CloudWatch Logs endpoint, write nginx traffic, run the
reference fluent.conf (paths adjusted, endpoint set) with the real `kawa` process, show what arrived.

    python scripts/demo.py [--lines 10000]
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]

from kawa.testing import nginx_log  # noqa: E402
from kawa.testing.cwl_server import MotoServer, fake_aws_env, read_all_events  # noqa: E402

GROUP, STREAM = "xxxxxx", "fluentd"     # the seed's log_group_name / log_stream_name


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=120)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kawa-demo-") as tmp, MotoServer() as moto:
        work = Path(tmp)
        access_log = work / "access.log"
        expected = nginx_log.write(str(access_log), args.lines, seed=3)
        seed_conf = (REPO / "examples" / "reference-cloudwatch.conf").read_text()
        conf = (seed_conf.replace("/var/log/nginx/access.log", str(access_log))
                .replace("/fluentd/log/nginx.pos", str(work / "nginx.pos"))
                .replace("auto_create_stream true",
                         f"auto_create_stream true\n  region us-east-1\n  endpoint {moto.endpoint}\n"
                         # Fluentd's (and so kawa's) default flush_interval is 60 s; a demo should not wait.
                         "  <buffer>\n    flush_interval 1s\n  </buffer>"))
        conf = conf.replace("  pos_file", "  read_from_head true\n  pos_file", 1)
        conf += "\n<system>\n  root_dir " + str(work / "state") + "\n</system>\n"
        (work / "fluent.conf").write_text(conf)
        print(f"local CloudWatch Logs endpoint: {moto.endpoint}")
        print(f"wrote {args.lines:,} nginx lines to {access_log} ({args.lines - expected:,} are /healthcheck)")
        print("running: kawa -c fluent.conf  (the seed's config, paths adjusted, endpoint set)")
        env = {**fake_aws_env(), "AWS_REGION": "us-east-1"}
        proc = subprocess.Popen([sys.executable, "-m", "kawa", "-c", str(work / "fluent.conf")], env=env,
                                stdout=open(work / "kawa.log", "w"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + args.timeout
        events: list = []
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(1)
                try:
                    events = read_all_events(moto.endpoint, GROUP, STREAM)
                except Exception:  # the group does not exist until kawa's first write
                    continue
                if len(events) >= expected:
                    break
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        print("--- kawa's log (first lines) ---")
        print("".join((work / "kawa.log").read_text().splitlines(keepends=True)[:25]), end="")
        print("--- CloudWatch Logs ---")
        print(f"group {GROUP!r} stream {STREAM!r}: {len(events):,} events arrived, {expected:,} expected")
        for event in events[:3]:
            print(f"  {event['timestamp']}  {event['message'][:160]}")
        want = sorted(l for l in nginx_log.lines(args.lines, seed=3) if '"GET /healthcheck ' not in l)
        got = sorted(orjson.loads(e["message"])["remote"] + " " + orjson.loads(e["message"])["path"] for e in events)
        want_keys = sorted(l.split(" ", 1)[0] + " " + l.split('"GET ', 1)[1].split(" ", 1)[0] for l in want)
        ok = got == want_keys
        print("every non-healthcheck line arrived exactly once" if ok else "MISMATCH: see kawa's log above")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
