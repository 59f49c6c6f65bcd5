"""Policy tests: cases kept beside the policy (`rules/tests/*.yaml`) that pin a regulation with
a few rows, one or more instants and the findings, letters and ledger amounts expected.

`cases` reads and checks the files, `world` fills in the rows a case does not care about,
`runner` plays each case through the engine's real night in a throwaway SQLite database, and
`report` prints expected against got.
"""
