"""The notice policy: pure stages between "the engine said notify" and "the journal
queues it" — who is told, and when (routing today; muting and limits plug in here).
"""
