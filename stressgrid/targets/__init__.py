"""Servers that ship with stressgrid to aim load at: ``demo``, the demo HTTP target of ``--demo-target``."""
