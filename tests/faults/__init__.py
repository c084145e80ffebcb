"""Fault injection: each test breaks something mid-work and checks nothing was lost."""
