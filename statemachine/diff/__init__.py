"""Previews of a plan against its clusters before a run: ``smrun diff`` and
``smrun validate --server-dry-run`` (issue 15 item 6).

- :mod:`.first` decides which states can be previewed: the ones that run first, before any
  state needs what an earlier state makes during the run (the rule is in its docstring);
- :mod:`.changes` compares what those states would do with the live objects (GETs only);
- :mod:`.unified` prints one kubectl-diff-style unified diff per object, Secrets masked;
- :mod:`.serverdryrun` sends the same writes with ``dryRun=All`` so the clusters' schemas and
  admission webhooks judge them.

Nothing here writes to a cluster: a dry-run request is judged and dropped by the server.
"""
