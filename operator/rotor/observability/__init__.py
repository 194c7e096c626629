"""What Rotor tells the outside: metrics, logs, and the masker every message passes through."""
