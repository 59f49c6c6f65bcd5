"""One cycle, for cron and systemd timers: `python jobs/nightly.py [run options]`.

Exactly `aftersales run`: evaluates the policy at the current instant, does the daily parts
whose local time has come, and delivers the outbox; options such as `--db` and `--rules` are
passed through. A timer every 15 minutes does what `aftersales schedule` does.
"""

import sys

from engine.cli import main

if __name__ == "__main__":
    sys.argv = [sys.argv[0], "run", *sys.argv[1:]]
    main()
