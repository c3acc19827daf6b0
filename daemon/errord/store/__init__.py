"""The embedded store (SQLite) and the MongoDB documents.

The journal is where "what has been read" (positions) and "what must still be
delivered" (the outbox) become durable together with the incidents, one transaction
per batch. It comes in parts over one connection: ``schema`` (the file, its modes,
tables, migrations and WAL), ``journal`` (the connection and its transactions, the batch
commit, the reads), ``outbox`` (notices and their deliveries per target) and
``mongoqueue`` (the incidents waiting for MongoDB). ``runstate`` owns the state_dir (its
lock, the checks that refuse a store that lost its database); ``mongostore`` maps
incidents to MongoDB documents and reads them back.
"""
