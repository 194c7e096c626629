"""The engines: one package per kind, each a watch-fed view and a worker that carries out plans.

Engines never import each other or a concrete backend: they see other engines through the ports in
rotor.engines.ports and backends through rotor.backends.protocols; rotor.wiring connects them.
"""
