"""The append-only ledger of penalties and rewards, its periods, and the monthly close."""
