"""Cluster administration: topic catalog reconciliation and live inspection."""
