"""The embedded store (SQLite) and the MongoDB documents.

``journal`` is where "what has been read" (positions) and "what must still be
delivered" (the outbox) become durable together with the incidents, one transaction
per batch; ``runstate`` owns the state_dir (its lock, the checks that refuse a store
that lost its database); ``mongostore`` maps incidents to MongoDB documents and reads
them back.
"""
