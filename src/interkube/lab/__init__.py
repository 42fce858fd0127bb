"""`interkube lab`: the scenarios of docs/scenarios.md built in network namespaces from a plan.

:class:`interkube.lab.build.Lab` is the API (``Lab.up(plan)``, ``.down()``, ``.status()``,
``.exec(cluster, pod, argv)``, addresses and namespace names); :mod:`.layout` computes what a
plan becomes, :mod:`.data` the DNS servers' data and Corefiles, :mod:`.netns` touches the
namespaces, :mod:`.agent` runs the pods' TCP servers, :mod:`.svg` draws a lab, :mod:`.command`
is the command line. See docs/lab.md.
"""
