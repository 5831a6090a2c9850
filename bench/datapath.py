"""`python bench/datapath.py` (as root): the datapath's share of a tunnel's speed, quicker than
`make bench-tunnel`. Encrypted TCP and UDP through provision only (no socat, no wireguard-go,
no insecure rows), on a default `type: tun` device and on one with `vnet_hdr: true`: the
checkout named by BENCH_BASELINE (before), then this one on the compiled datapath, then this
one with PROVISION_DATAPATH=python (the fallback). Same namespaces, measurement and table as
bench/tunnel.py (BENCH_SECONDS, BENCH_ROUNDS; Gbit/s median with lowest–highest, CPU-s per GB
of both ends' tunnel processes).
"""

from __future__ import annotations

import tunnel as bench


def main() -> None:
    codes = bench.checkouts()
    here = codes[-1]
    runs = [(code, "") for code in codes[:-1]] + [(here, "compiled"), (here, "python")]
    bench.compare([(code, datapath, transport, flags) for flags in ("default", "vnet_hdr")
                   for transport in ("tcp", "udp") for code, datapath in runs], "provision-bench-datapath-")


if __name__ == "__main__":
    main()
