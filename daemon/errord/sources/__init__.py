"""Sources: where the batch's bytes come from, with a position it can commit.

``base`` is the seam the batch codes against (``Source``, ``Checkpoint``, ``Chunk``,
``FileStatus``). The file source: ``tail`` (the ``Tailer``: the read round, closing
quiet rotated files, checkpoints) owns ``table`` (every identity's state, moved by
checkpoints, commits and rollbacks), ``scan`` (globs to identities, where reading
starts), ``recovery`` (truncation, copytruncate, copies), ``fdbudget`` (descriptors:
the limit, closing quiet files, reopening them by identity) and ``watch`` (folder
watches); ``follower`` reads one file identity, ``fileid`` tells identities apart;
``zonecheck`` watches live files for event times written in the wrong zone.
"""
