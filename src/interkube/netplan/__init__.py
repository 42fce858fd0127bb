"""Address plans for connected clusters: ``interkube check`` and ``interkube plan``.

The pieces stay apart: :mod:`.parse` (plan file to :mod:`.model` values), :mod:`.rules` (the
rules R1..R10 over a plan), :mod:`.allocate` (a plan for N new clusters), :mod:`.discover` (a
plan from live clusters), :mod:`.report` and :mod:`.svg` (output), :mod:`.dump` (plan back to a
file) and :mod:`.command` (the command line). See docs/netplan.md.
"""
