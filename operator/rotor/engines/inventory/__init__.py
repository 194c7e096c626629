"""`rotor inventory`: read what the inventory needs from a cluster (collect.py), then plan and print
(command.py) with rotor.planning.inventory. A command, not a controller: no watches, no view."""
