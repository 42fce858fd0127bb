"""``interkube externalnames``: keep ExternalName Services in one cluster for another's Services.

The ServiceName variant of the split-DNS scenario (issue 15, section 3): for every selected
Service of the *source* cluster (and, for a headless one, every ready endpoint with a hostname),
an ExternalName Service of the same name in the *target* cluster, pointing at a name interkube
serves there from the source's own data (``<svc>.<ns>.svc.cluster.<source>``).

* :mod:`.plan` -- pure: what the target should hold, and the changes from what it holds;
* :mod:`.target` -- the target API calls (Services, Namespaces, Leases);
* :mod:`.lease` -- leader election on a coordination.k8s.io Lease;
* :mod:`.controller` -- the source watch (and of its own Services in the target), the reconcile
  passes, metrics and ``/ready``;
* :mod:`.command` -- the command line.
"""
