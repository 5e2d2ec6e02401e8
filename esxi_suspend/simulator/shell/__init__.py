"""The simulated host's `sh`: the command lines our shutdown path sends, with busybox ash's
semantics and nothing fancier. Imports only the simulator.

    interpreter.py  runs a parsed script: pipelines, subshells, `&` jobs, redirections
    lexer.py        its tokens: words (quotes, `$` expansions), operators, redirections
    syntax.py       its grammar: the script parsed into a tree of commands
    tree.py         the tree's immutable nodes
    expand.py       its expansions: parameters, $(...), $(( )), splitting, patterns
    state.py        what a running shell holds: variables, fds, `&` children, signals
    commands.py     its builtins and ESXi's programs (via the simulator's vimcmd.py, esxcli.py)
    applets.py      the busybox applets (cat, grep, sleep, tail, ...)
"""
