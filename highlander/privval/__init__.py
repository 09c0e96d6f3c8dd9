"""``highlander privval``: a CometBFT remote signer that checks every
signature against the sign-state register before it signs.

Pure modules: :mod:`keccak`, :mod:`merlin`, :mod:`secretconn` (the
handshake's arithmetic and the frame cipher), :mod:`schema` and
:mod:`messages` (the protobuf wire), :mod:`signbytes`, :mod:`rules` (FilePV's
double-sign rule) and :mod:`config`. Adapters: :mod:`transport` (sockets),
:mod:`key` and :mod:`state` (files). :mod:`signer` decides and signs one
request; :mod:`service` keeps the connections to the CometBFT nodes.
"""
