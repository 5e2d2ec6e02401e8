"""The host sequence started detached on its own, for tests of the script alone.

The package starts it from the shutdown command's input (script.shutdown_command), after
the inventory; tests of the sequence script itself start it with this line instead: the same
`nohup sh -c`, output to the same log, returning at once.
"""

from __future__ import annotations


def detached(script: str, log: str) -> str:
    if "'" in script:
        raise ValueError("the test line quotes the script with '")
    return f"nohup sh -c '{script}' >> \"{log}\" 2>&1 < /dev/null &"
