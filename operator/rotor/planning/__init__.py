"""Pure planning: plain data in, plain data out. No I/O, no clients, no clocks read here."""
