"""The pure core: key format, hashing, scopes and the grant decision.

Nothing in this package performs I/O or imports a web or database library, so
every decision about a key can be tested as a plain function.
"""
