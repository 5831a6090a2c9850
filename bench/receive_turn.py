"""`python bench/receive_turn.py` (as root): the rows issue 12's receive turn moves, quickly: default
`type: tun` devices (as users write them), encrypted UDP and TCP, the checkout named by
BENCH_BASELINE (before) and this one (compiled), and UDP on the Python fallback. Same
namespaces, measurement and table as bench/tunnel.py (BENCH_SECONDS, BENCH_ROUNDS)."""

from __future__ import annotations

import tunnel as bench


def main() -> None:
    codes = bench.checkouts()
    here = codes[-1]
    before = [(code, "") for code in codes[:-1]]
    udp = before + [(here, "compiled"), (here, "python")]
    tcp = before + [(here, "compiled")]
    bench.compare([(code, datapath, "udp", "default") for code, datapath in udp]
                  + [(code, datapath, "tcp", "default") for code, datapath in tcp], "provision-bench-receive-")


if __name__ == "__main__":
    main()
