"""Nightly entry point for cron and systemd timers: `python jobs/nightly.py [run options]`.

Evaluates the policy at the current instant and delivers the outbox, exactly like
`aftersales run`; options such as `--db` and `--rules` are passed through.
"""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "run", *sys.argv[1:]]
    main()
