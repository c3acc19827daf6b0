"""Fleet mode (CONTRACT §13): many hosts sharing one fleet incident per key in MongoDB.

``claims`` owns the ``fleet_incidents`` documents and decides, by atomic single-document
operations only, which member speaks; ``runconfig`` is ``[fleet]`` as the daemon holds it.
Nothing is imported here, so ``errord.config`` can name ``FleetConfig`` without pymongo.
"""
