"""Campaign delivery workers: lanes in, SMTP / HTTP gateways out, results and ledger back."""
