"""Integrations of tinydj with frameworks (``tinydj.contrib.django``)."""
