"""`python bench/receive_turn.py` (as root): the rows issue 12's receive turn moves, quickly: default
`type: tun` devices (as users write them), encrypted UDP and TCP, the checkout named by
BENCH_BASELINE (before) and this one (compiled), and UDP on the Python fallback. Same
namespaces, measurement and table as bench/tunnel.py (BENCH_SECONDS, BENCH_ROUNDS)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import tunnel as bench


def main() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the benchmark needs root (network namespaces)")
    codes = bench.checkouts()
    here = codes[-1]
    bench.INVENTORY = bench.INVENTORY.replace("vnet_hdr: true, ", "")
    work = Path(tempfile.mkdtemp(prefix="provision-bench-receive-"))
    rows = []
    bench.setup()
    try:
        bare = bench.rtt(bench.UNDERLAY[0])
        rows.append(bench.measure(bench.BARE, bench.UNDERLAY[0], None))
        rows[-1].rtt_ms = rows[-1].rtt_median_ms = 0.0
        for transport, runs in (("udp", [(c, "") for c in codes[:-1]] + [(here, "compiled"), (here, "python")]),
                                ("tcp", [(c, "") for c in codes[:-1]] + [(here, "compiled")])):
            for code, datapath in runs:
                os.environ["PROVISION_DATAPATH"] = datapath
                what = f"{code.name}{f' ({datapath})' if datapath else ''}: default tun, {transport.upper()}, encrypted"
                with bench.provisioned(code, "tun", transport, True, work):
                    rows.append(bench.measure(what, bench.INNER[0], bench.TUNNEL, bare))
    finally:
        os.environ.pop("PROVISION_DATAPATH", None)
        bench.teardown()
        shutil.rmtree(work, ignore_errors=True)
    bench.print_table(rows, bare)


if __name__ == "__main__":
    main()
