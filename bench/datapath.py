"""`python bench/datapath.py` (as root): the datapath's share of a tunnel's speed, quicker than
`make bench-tunnel`. Encrypted TCP and UDP through provision only (no socat, no wireguard-go,
no insecure rows), on a default `type: tun` device and on one with `vnet_hdr: true`: the
checkout named by BENCH_BASELINE (before), then this one on the compiled datapath, then this
one with PROVISION_DATAPATH=python (the fallback). Same namespaces, measurement and table as
bench/tunnel.py (BENCH_SECONDS, BENCH_ROUNDS; Gbit/s median with lowest–highest, CPU-s per GB
of both ends' tunnel processes).
"""

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
    runs = [(code, "") for code in codes[:-1]] + [(here, "compiled"), (here, "python")]
    with_vnet = bench.INVENTORY
    default = with_vnet.replace("vnet_hdr: true, ", "")
    work = Path(tempfile.mkdtemp(prefix="provision-bench-datapath-"))
    rows = []
    bench.setup()
    try:
        bare = bench.rtt(bench.UNDERLAY[0])
        rows.append(bench.measure(bench.BARE, bench.UNDERLAY[0], None))
        rows[-1].rtt_ms = rows[-1].rtt_median_ms = 0.0
        for flags, inventory in (("default tun", default), ("tun + vnet_hdr", with_vnet)):
            bench.INVENTORY = inventory
            for transport in ("tcp", "udp"):
                for code, datapath in runs:
                    os.environ["PROVISION_DATAPATH"] = datapath  # "": the checkout's own choice
                    what = f"{code.name}{f' ({datapath})' if datapath else ''}: {flags}, {transport.upper()}, encrypted"
                    with bench.provisioned(code, "tun", transport, True, work):
                        row = bench.measure(what, bench.INNER[0], bench.TUNNEL, bare)
                        rows.append(row)
    finally:
        os.environ.pop("PROVISION_DATAPATH", None)
        bench.teardown()
        shutil.rmtree(work, ignore_errors=True)
    bench.print_table(rows, bare)


if __name__ == "__main__":
    main()
