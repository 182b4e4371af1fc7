"""The switch as a transaction: the journaled steps on every HAProxy, its write-ahead
journal, recovery of an unfinished one, an instance brought in line, the probe during it."""
