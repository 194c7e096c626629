"""The LeakIncident engine: a reported leak carried out as a runbook.

view.py holds the incidents folded from watch events and the denylists they install; worker.py
takes one step at a time and records it (journal.py: status, timeline, Events, audit lines);
context.py is what a step works with; steps/ holds the runbook, one module per step. Decisions
are pure functions in rotor.planning.incident*.
"""
