"""The reloader: restarts the workloads that read a Secret when it changes. view.py folds watch
events into what it knows; worker.py runs the rounds (batch, plan, patch, report)."""
