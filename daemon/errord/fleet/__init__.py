"""Fleet mode (CONTRACT §13): many hosts sharing one fleet incident per key in MongoDB.

``claims`` owns the ``fleet_incidents`` documents and decides, by atomic single-document
operations only, which member speaks.
"""

from errord.fleet.claims import FleetClaims, FleetDecision, ScopeMismatch

__all__ = ["FleetClaims", "FleetDecision", "ScopeMismatch"]
