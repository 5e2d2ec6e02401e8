"""`esxi-suspend demo`: the real shutdown path against the built-in simulator, printed on its
clock. Never on upsmon's path.

May import: runner, simulator and the spine's bottom.

    command.py     start the simulator, write a throwaway env file, run the shutdown, print
    timeline.py    each host event and log line as it happens, in simulated seconds
"""
