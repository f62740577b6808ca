"""Engine of the trading workstation: data, models, training, backtests, run history, CLI.

Pure Python + PyTorch; it never imports Qt, so the CLI, the GUI and the tests drive the same code.
"""

__version__ = "0.1.0"
