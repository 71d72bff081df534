"""Network alerting: ping results -> alerts (net.alerts) and outage responses (net.responses)."""
