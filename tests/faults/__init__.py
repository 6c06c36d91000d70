"""The fault campaign: pulse loses nothing under the faults production brings."""
