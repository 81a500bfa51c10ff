"""Entry point of the processes `up` starts with this interpreter: the forwarder
(`python -m otactl.localcluster forward ...`) and the watchdog (`... watchdog ...`)."""

import sys

from otactl.localcluster.cluster import _watchdog_main
from otactl.localcluster.forwarder import _forward_main

if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "forward":
        _forward_main(sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "watchdog":
        _watchdog_main(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    else:
        sys.exit(
            "usage: python -m otactl.localcluster forward [--faults=FD:FILE] FD=HOST:PORT ... | "
            "watchdog OWNER_PID OWNER_TICKS STATE_DIR"
        )
