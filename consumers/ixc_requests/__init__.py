"""IXC service workers: consume the request lanes, call IXC, publish status (issue 8)."""
