"""esxi-suspend: bring VMware ESXi hosts down cleanly over SSH when the UPS battery runs out."""

__version__ = "0.1.0"
