"""The replay command with one fault injected, for the end-to-end tests:

    python replay_faults.py raise:<table>:<partition> ARGS...   writing that table's partition raises OSError,
                                                                every time (the step's retries fail too)
    python replay_faults.py kill:<table>:<partition> ARGS...    writing it kills the process (SIGKILL), mid-run;
                                                                only the first write, so a re-run succeeds"""

import os
import runpy
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # this checkout's mlops_assets, as `-m` from it
from mlops_assets.core.io.storage import PartitionStore  # noqa: E402

kind, table, partition = sys.argv[1].split(":")
original = PartitionStore.write
fired = []


def faulty_write(self, asset, key, frame):
    if asset == table and key == partition and (kind == "raise" or not fired):
        fired.append(key)
        if kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(28, f"No space left on device (injected while writing {asset} {key})")
    return original(self, asset, key, frame)


PartitionStore.write = faulty_write
sys.argv = ["mlops_assets.demo.replay", *sys.argv[2:]]
runpy.run_module("mlops_assets.demo.replay", run_name="__main__", alter_sys=True)
