"""Rotor: deliver secrets from real secret backends into workloads and rotate them without downtime."""

__version__ = "0.1.0"

GROUP = "rotor.dev"
VERSION = "v1alpha1"
