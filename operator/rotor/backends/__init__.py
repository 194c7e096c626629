"""Secret backends: one module each, implementing the protocols in rotor.backends.protocols.

Engines import only rotor.backends.protocols; rotor.wiring picks the concrete backends.
"""
