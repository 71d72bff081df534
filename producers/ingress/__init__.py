"""The service-request ingress: an aiohttp API in front of the request lanes (issue 8)."""
