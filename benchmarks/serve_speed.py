"""How fast `elprop serve` answers for big run folders: a design run and a screen with N rows each.

    python benchmarks/serve_speed.py [--n 10000] [--repeats 5]

Starts the app on a local port (the werkzeug server `elprop serve` uses) and times whole HTTP requests with
urllib, start to last byte: the runs list, a run page (first page, and the last page sorted by a column), and the
predict page for 20 SMILES with the shipped model (after one warm-up request that loads the model). Prints the
median and the slowest of --repeats requests. The issue's target: under 1 s per page for 10,000 predictions.
Asserts nothing.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    import logging

    from werkzeug.serving import make_server

    from elprop.serve.app import create_app
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    smiles = ["CCO", "c1ccccc1O", "CC=CC=O", "N#CC(=O)N"]
    (tmp / "design").mkdir()
    pd.DataFrame({"smiles": [smiles[i % 4] for i in range(a.n)], "round": np.repeat(np.arange(1, 11), a.n // 10),
                  "gap_pred": rng.normal(6, 1, a.n), "gap_std": rng.random(a.n), "gap_label": rng.normal(6, 1, a.n),
                  "hit": rng.random(a.n) < 0.2}).to_csv(tmp / "design" / "proposals.csv", index=False)
    (tmp / "screen").mkdir()
    pd.DataFrame({"smiles": [smiles[i % 4] for i in range(a.n)], "score": rng.random(a.n),
                  "gap_pred": rng.normal(6, 1, a.n)}).to_csv(tmp / "screen" / "top.csv", index=False)
    (tmp / "screen" / "summary.json").write_text("{}")
    srv = make_server("127.0.0.1", 0, create_app([tmp]), threaded=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_port}"

    def timed(url, data=None):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url, data=data, timeout=120) as r:
            body = r.read()
        return time.perf_counter() - t0, body

    _, runs_page = timed(base + "/runs")
    found = {name.decode(): rid.decode() for rid, name in re.findall(rb"/runs/([0-9a-f]{10})\">[^<]*/(\w+)</a>",
                                                                     runs_page)}
    form = urllib.parse.urlencode({"smiles": "\n".join(smiles * 5), "model": "shipped"}).encode()
    timed(base + "/predict", form)  # warm-up: loads the shipped model
    cases = [("runs list", base + "/runs", None),
             (f"design run, {a.n} proposals, page 1", base + f"/runs/{found['design']}", None),
             (f"design run, last page sorted by gap_pred", base + f"/runs/{found['design']}?page={a.n // 100}"
                                                                 "&sort=gap_pred&desc=1", None),
             (f"screen, {a.n} rows, page 1", base + f"/runs/{found['screen']}", None),
             ("predict 20 SMILES (shipped model, depictions)", base + "/predict", form)]
    print(f"| request | median s | slowest s | bytes |\n|---|---|---|---|")
    for name, url, data in cases:
        times = []
        for _ in range(a.repeats):
            dt, body = timed(url, data)
            times.append(dt)
        print(f"| {name} | {statistics.median(times):.3f} | {max(times):.3f} | {len(body):,} |")
    srv.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
