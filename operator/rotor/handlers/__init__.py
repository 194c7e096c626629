"""Kopf handlers: the only layer that imports kopf. Each decodes the event, calls the engine, returns."""
