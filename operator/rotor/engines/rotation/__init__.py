"""The rotation engine: view.py (RotationPolicies from watch events; the Policies port), worker.py
(one step of the state machine in rotor.planning.rotation, and the status it writes), strategies/
(one class per strategy behind one protocol) and gauges.py (its metrics)."""
