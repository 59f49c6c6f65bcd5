"""The `when:` condition language: parse, check against a table, compile to SQL, evaluate.

    expr = parse("kind == 'maintenance' and ends_on <= as_of + 1 month")
    problems = check(expr, contracts_table)          # list[ExprProblem], empty when fine
    where = to_sql(expr, contracts_table, as_of)     # SQLAlchemy boolean, bound parameters
    evaluate(expr, record, as_of)                    # True / False / None (unknown)

No eval, no raw SQL: the text becomes a small frozen AST (engine.expr.nodes) and only that.
"""

from engine.expr.checker import check
from engine.expr.errors import ExprError, ExprProblem, ExprSyntaxError, ExprTypeError
from engine.expr.evaluator import evaluate, explain, fields
from engine.expr.nodes import Expr, unparse
from engine.expr.parser import parse
from engine.expr.sql import to_sql

__all__ = [
    "Expr",
    "ExprError",
    "ExprProblem",
    "ExprSyntaxError",
    "ExprTypeError",
    "check",
    "evaluate",
    "explain",
    "fields",
    "parse",
    "to_sql",
    "unparse",
]
