"""Sources: where the batch's bytes come from, with a position it can commit.

``tail`` follows the files that match the configured globs (rotation, truncation,
copies, descriptor pressure); ``follower`` reads one file identity; ``fileid`` tells
identities apart; ``fdbudget`` keeps the open descriptors within the limit;
``zonecheck`` watches live files for event times written in the wrong zone.
"""
