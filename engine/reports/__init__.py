"""Manager reports: summaries from the ledger as email-ready HTML and CSV."""
