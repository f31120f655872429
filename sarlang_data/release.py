"""The authors' release layout -> sample records and a rejects report.

(Interface stub; implementation in progress.)
"""
