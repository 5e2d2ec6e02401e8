"""`python -m esxi_suspend` behaves exactly like the installed `esxi-suspend` command."""

from esxi_suspend.cli import main_exit

main_exit()
