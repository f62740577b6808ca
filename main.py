"""Start the trading workstation: `python main.py`."""

import sys

from workstation.app import main

if __name__ == "__main__":
    sys.exit(main())
