"""The sign-state register: a high-water mark replicated to a majority of
the trio, so that no two signers can both get a signature through.

``register`` is the protocol itself, pure and I/O-free; ``store`` keeps a
replica's records durable; ``wire``, ``server`` and ``client`` carry it
between nodes and to local signers.
"""
